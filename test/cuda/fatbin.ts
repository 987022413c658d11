// Lists the device code embedded in an ELF shared object (the addon): the `.nv_fatbin` section holds
// fatbinary containers (magic 0xBA55ED50), each a list of entries — kind 2 = cubin (ELF) for one
// SM version, kind 1 = PTX. This is what `cuobjdump --list-elf` reads; the test uses it because the
// toolkit on the build machines has no cuobjdump (and runs cuobjdump too where it exists).
import { readFileSync } from 'node:fs';

export interface FatbinEntry {
  kind: 'elf' | 'ptx' | `kind ${number}`;
  /** SM version, e.g. 80 */
  arch: number;
  bytes: number;
}

function section(elf: Buffer, name: string): { offset: number; size: number } | undefined {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) throw new Error('not a 64-bit ELF file');
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a), shnum = elf.readUInt16LE(0x3c), shstrndx = elf.readUInt16LE(0x3e);
  const header = (i: number) => {
    const o = shoff + i * shentsize;
    return { name: elf.readUInt32LE(o), offset: Number(elf.readBigUInt64LE(o + 0x18)), size: Number(elf.readBigUInt64LE(o + 0x20)) };
  };
  const strtab = header(shstrndx).offset;
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    const end = elf.indexOf(0, strtab + h.name);
    if (elf.toString('latin1', strtab + h.name, end) === name) return { offset: h.offset, size: h.size };
  }
  return undefined;
}

export function fatbinEntries(file: string): FatbinEntry[] {
  const elf = readFileSync(file);
  const sec = section(elf, '.nv_fatbin');
  if (!sec) return [];
  const entries: FatbinEntry[] = [];
  let p = sec.offset;
  const end = sec.offset + sec.size;
  while (p + 16 <= end) {
    if (elf.readUInt32LE(p) !== 0xba55ed50) break;
    const headerSize = elf.readUInt16LE(p + 6);
    const fatSize = Number(elf.readBigUInt64LE(p + 8));
    let q = p + headerSize;
    while (q < p + headerSize + fatSize) {
      const kind = elf.readUInt16LE(q);
      const entryHeader = elf.readUInt32LE(q + 4);
      const payload = Number(elf.readBigUInt64LE(q + 8));
      const arch = elf.readUInt32LE(q + 28);
      entries.push({ kind: kind === 2 ? 'elf' : kind === 1 ? 'ptx' : `kind ${kind}`, arch, bytes: payload });
      q += entryHeader + payload;
    }
    p = Math.ceil((p + headerSize + fatSize) / 8) * 8;  // containers are 8-byte aligned
  }
  return entries;
}
