// `pixelfly layout`: print a flat block butterfly block mask and its statistics.
import { flatBlockButterflyLayout, layoutRows } from '../../core/layout';
import { buildBlockIndex, density, rowCounts } from '../../core/blockIndex';
import { PixelflyConfigError } from '../../core/errors';
import { CliError, intOption, parse, type Command } from './command';

const options = {
  out: { type: 'string' },
  in: { type: 'string' },
  block: { type: 'string' },
  'butterfly-size': { type: 'string' },
  'n-factors': { type: 'string' },
  'global-size': { type: 'string' },
  shuffle: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

export const layoutCommand: Command = {
  summary: 'print the block mask of a flat block butterfly layout',
  usage: '--out N --in N --block B --butterfly-size S --n-factors F [--global-size G] [--shuffle] [--json]',
  async run(argv) {
    const { values } = parse(argv, options);
    const outFeatures = intOption(values, 'out');
    const inFeatures = intOption(values, 'in');
    let layout;
    try {
      layout = flatBlockButterflyLayout(outFeatures, inFeatures, {
        block: intOption(values, 'block'),
        butterflySize: intOption(values, 'butterfly-size'),
        nFactors: intOption(values, 'n-factors'),
        globalSize: intOption(values, 'global-size', 0),
        shuffle: values.shuffle ?? false,
      });
    } catch (err) {
      if (err instanceof PixelflyConfigError) throw new CliError(`invalid layout: ${err.message}`);
      throw err;
    }
    const rows = layoutRows(layout);
    const index = buildBlockIndex(layout);
    const d = density(layout);
    const stats = {
      out_features: layout.outFeatures,
      in_features: layout.inFeatures,
      out_padded: layout.outPadded,
      in_padded: layout.inPadded,
      block: layout.block,
      butterfly_size: layout.params.butterflySize,
      n_factors: layout.params.nFactors,
      global_size: layout.params.globalSize,
      shuffle: layout.params.shuffle,
      block_rows: layout.blockRows,
      block_cols: layout.blockCols,
      nnz_blocks: layout.nnzBlocks,
      density: d.block,
      element_density: d.element,
      row_counts: Array.from(rowCounts(index)),
    };
    if (values.json) {
      process.stdout.write(JSON.stringify({ layout: rows, ...stats }) + '\n');
      return 0;
    }
    process.stdout.write(rows.join('\n') + '\n');
    const counts = stats.row_counts;
    process.stdout.write(
      `\n${layout.outFeatures}×${layout.inFeatures} (padded ${layout.outPadded}×${layout.inPadded}), block ${layout.block}: ` +
        `${layout.blockRows}×${layout.blockCols} blocks, ${layout.nnzBlocks} kept, density ${d.block.toFixed(4)} ` +
        `(element ${d.element.toFixed(4)}), kept per row ${Math.min(...counts)}–${Math.max(...counts)}\n`,
    );
    return 0;
  },
};
