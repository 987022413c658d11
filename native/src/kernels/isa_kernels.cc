// The kernels' inner loops, compiled once per instruction set (PIXELFLY_ISA = 0 portable, 1 AVX2,
// 2 AVX-512; see binding.gyp). Vectors are GCC vector extensions, so the same source lowers to zmm,
// ymm or baseline SSE registers; only the tile sizes differ per ISA.
//
// Every product is one register-blocked microkernel, C[MR×NR] (+)= Σ_k a[k][0:MR] ⊗ b[k][0:NR]:
// `a` values are broadcast, `b` rows are NR-wide vectors. Operands are first packed into panels
// (`a`: [k][MR], `b`: [k][NR], zero-padded), which is where transposes, padding and sparsity are
// resolved, so the microkernel only ever streams contiguous rows and never sees a mask:
//  - dense GEMM: BLIS-style loops (KC-deep B panels shared by the threads, MC×KC A blocks per thread);
//  - Pixelfly forward/dX: each block-row (forward) or block-column (dX) of W is a list of b×b blocks,
//    i.e. a GEMM whose K dimension is the concatenation of those blocks; `a` comes from the packed
//    activation panel at each block's offset ("segments"), `b` is the packed blocks, contiguous;
//  - Pixelfly dW: per kept block a GEMM over the M rows, in chunks whose block tiles stay in cache,
//    parallel over kept blocks so no two threads write the same output.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "isa_table.h"

#if PIXELFLY_ISA == 2
#define ISA_TABLE kAvx512Kernels
#define ISA_NS isa_avx512
#elif PIXELFLY_ISA == 1
#define ISA_TABLE kAvx2Kernels
#define ISA_NS isa_avx2
#else
#define ISA_TABLE kPortableKernels
#define ISA_NS isa_portable
#endif

namespace pixelfly {
namespace kernels {
namespace ISA_NS {
namespace {

#if PIXELFLY_ISA == 2
constexpr int VL = 16;      // floats per zmm
constexpr int MR = 14;      // 14×32 tile: 28 accumulators + 2 b vectors + broadcasts of 32 zmm
constexpr int MR_DW = 8;    // dW tiles must divide the block: 8×32
#elif PIXELFLY_ISA == 1
constexpr int VL = 8;       // floats per ymm
constexpr int MR = 6;       // 6×16 tile: 12 accumulators of 16 ymm
constexpr int MR_DW = 4;
#else
constexpr int VL = 4;       // baseline SSE
constexpr int MR = 6;
constexpr int MR_DW = 4;
#endif
constexpr int NV = 2;       // vectors per tile row for blocks >= NV*VL columns
// Packed activation block per work item of the Pixelfly forward / dX, in KB (tuned on this project's
// AVX-512 machines, 2 MB L2 per core: smaller blocks keep the panels closer to L1; dX's rows are 4×
// wider for the shapes we train, so it gets a larger block: each work item streams all of W's
// packed blocks once, and with 1024×4096 layers (4096-wide rows, 2-4 MB of blocks at density 1/8-1/4)
// 768 KB items (3 row panels instead of 1) cut dX's time by about a tenth, 1-thread CPU time).
constexpr int kForwardBlockKB = 192;
constexpr int kBackwardDataBlockKB = 768;
constexpr int KC = 768;     // deepest packed panel of the dense GEMM (fewer passes over C)

typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int vf_i __attribute__((vector_size(VL * sizeof(int))));  // shuffle masks

inline vf loadu(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storeu(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
// x - 0 is x for every x (unlike 0 + x for x = -0), so this folds to a single broadcast load.
inline vf bcast(float x) { return x - vf{}; }

// ---------------------------------------------------------------------------------------------
// Scratch: per-thread buffers that only grow, so steady-state calls neither allocate nor fault pages.
// ---------------------------------------------------------------------------------------------
struct Scratch {
  float* ptr = nullptr;
  size_t cap = 0;
  ~Scratch() { std::free(ptr); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(ptr);
      size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      ptr = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!ptr) {
        cap = 0;
        throw std::bad_alloc();
      }
      cap = n;
    }
    return ptr;
  }
};
thread_local Scratch tlsA;       // a-side panels (per worker thread)
thread_local Scratch tlsB;       // b-side panels shared by a call (owned by the calling thread)
thread_local std::vector<int> tlsOffsets;

// ---------------------------------------------------------------------------------------------
// Packing. dst is [nK][width]; entries outside kValid×wValid are zero.
// ---------------------------------------------------------------------------------------------
// dst[k][w] = src[k*ld + w]. Panel widths are compile-time constants so full rows become vector
// moves; partial rows (padding) take the scalar path.
template <int WIDTH>
inline void packCopy(float* dst, const float* src, long ld, int nK, int kValid, int wValid) {
  for (int k = 0; k < nK; k++) {
    float* d = dst + (long)k * WIDTH;
    if (k < kValid && wValid == WIDTH) {
      const float* s = src + k * ld;
#pragma GCC unroll 16
      for (int w = 0; w < WIDTH; w++) d[w] = s[w];
    } else if (k < kValid) {
      const float* s = src + k * ld;
      int w = 0;
      for (; w < wValid; w++) d[w] = s[w];
      for (; w < WIDTH; w++) d[w] = 0.f;
    } else {
      for (int w = 0; w < WIDTH; w++) d[w] = 0.f;
    }
  }
}

// dst[k][w] = src[w*ld + k]: a transpose, read in row segments so the source streams.
#if PIXELFLY_ISA == 2
// 16×16 in-register transpose: at each step, swap the off-diagonal s×s sub-blocks of every 2s×2s tile.
template <int S>
inline void transposeStep(vf (&v)[16]) {
  vf_i lo, hi;  // lane l of the new top row / bottom row (indices >= 16 pick from b); folded at compile time
  for (int l = 0; l < 16; l++) {
    lo[l] = (l & S) ? 16 + l - S : l;
    hi[l] = (l & S) ? 16 + l : l + S;
  }
  for (int i = 0; i < 16; i++) {
    if (i & S) continue;
    const vf a = v[i], b = v[i + S];
    v[i] = __builtin_shuffle(a, b, lo);
    v[i + S] = __builtin_shuffle(a, b, hi);
  }
}
#endif

inline void packTrans(float* dst, const float* src, long ld, int nK, int kValid, int width, int wValid) {
  constexpr int KB = 16;
  for (int k0 = 0; k0 < nK; k0 += KB) {
    const int kn = std::min(KB, nK - k0);
    const int kv = std::max(0, std::min(kn, kValid - k0));
#if PIXELFLY_ISA == 2
    // Activation panels (width MR = 14) and transposed weights (width 32) are the bulk of all
    // packing: transpose full 16×16 slices in registers instead of scalar moves.
    if (wValid == width && kv == KB && (width == MR || width % 16 == 0)) {
      for (int w0 = 0; w0 < width; w0 += 16) {
        const int wn = std::min(16, width - w0);
        vf v[16];
        for (int w = 0; w < 16; w++) v[w] = w < wn ? loadu(src + (w0 + w) * ld + k0) : vf{};
        transposeStep<8>(v);
        transposeStep<4>(v);
        transposeStep<2>(v);
        transposeStep<1>(v);
        float* d = dst + (long)k0 * width + w0;
        for (int k = 0; k < KB; k++) std::memcpy(d + (long)k * width, &v[k], wn * sizeof(float));
      }
      continue;
    }
#endif
    for (int w = 0; w < width; w++) {
      float* d = dst + (long)k0 * width + w;
      if (w < wValid) {
        const float* s = src + w * ld + k0;
        int k = 0;
        for (; k < kv; k++) d[(long)k * width] = s[k];
        for (; k < kn; k++) d[(long)k * width] = 0.f;
      } else {
        for (int k = 0; k < kn; k++) d[(long)k * width] = 0.f;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Microkernel. C[rows×cols] (=|+=) Σ_s Σ_k a_s[k*sa + 0:R] ⊗ b[(s*kseg + k)*sb + 0:NVV*VL] (+ bias)
//   a_s = a + aoff[s] (or a itself when aoff is null), sa floats apart per k (R for packed panels;
//   dW's block tiles are [k][b]);
//   b   = one stream of nseg*kseg rows of NVV vectors, sb floats apart.
// ---------------------------------------------------------------------------------------------
template <int R, int NVV>
inline void micro(int nseg, int kseg, const float* a, long sa, const int* aoff, const float* b, long sb, float* C,
                  long ldc, int rows, int cols, bool accumulate, const float* bias) {
  constexpr int NR = NVV * VL;
  // C is usually cold (written by an earlier pass or another block): start fetching it now so the
  // final read-modify-write does not stall.
  for (int i = 0; i < rows; i++) {
    __builtin_prefetch(C + i * ldc, 1, 3);
    __builtin_prefetch(C + i * ldc + NR - 1, 1, 3);
  }
  vf acc[R][NVV];
#pragma GCC unroll 32
  for (int i = 0; i < R; i++)
#pragma GCC unroll 4
    for (int v = 0; v < NVV; v++) acc[i][v] = vf{};

  for (int s = 0; s < nseg; s++) {
    const float* ap = aoff ? a + aoff[s] : a;
    // Segments jump around the packed panel: fetch the next one while this one runs.
    const float* next = (aoff && s + 1 < nseg) ? a + aoff[s + 1] : nullptr;
    for (int k = 0; k < kseg; k++) {
      if (next) __builtin_prefetch(next + (long)k * R);
      vf bv[NVV];
#pragma GCC unroll 4
      for (int v = 0; v < NVV; v++) bv[v] = loadu(b + v * VL);
#pragma GCC unroll 32
      for (int i = 0; i < R; i++) {
        const vf ai = bcast(ap[i]);
#pragma GCC unroll 4
        for (int v = 0; v < NVV; v++) acc[i][v] += ai * bv[v];
      }
      ap += sa;
      b += sb;
    }
  }

  if (bias) {
    float bpad[NR];
    for (int j = 0; j < NR; j++) bpad[j] = j < cols ? bias[j] : 0.f;
#pragma GCC unroll 4
    for (int v = 0; v < NVV; v++) {
      const vf bb = loadu(bpad + v * VL);
#pragma GCC unroll 32
      for (int i = 0; i < R; i++) acc[i][v] += bb;
    }
  }

  if (rows == R && cols == NR) {
#pragma GCC unroll 32
    for (int i = 0; i < R; i++) {
#pragma GCC unroll 4
      for (int v = 0; v < NVV; v++) {
        float* c = C + i * ldc + v * VL;
        storeu(c, accumulate ? loadu(c) + acc[i][v] : acc[i][v]);
      }
    }
  } else {
    float tile[R][NR];
    for (int i = 0; i < R; i++)
      for (int v = 0; v < NVV; v++) storeu(&tile[i][v * VL], acc[i][v]);
    for (int i = 0; i < rows; i++) {
      float* c = C + i * ldc;
      if (accumulate)
        for (int j = 0; j < cols; j++) c[j] += tile[i][j];
      else
        for (int j = 0; j < cols; j++) c[j] = tile[i][j];
    }
  }
}

inline int ceilDiv(long a, long b) { return (int)((a + b - 1) / b); }

// Software prefetch of the rows the NEXT work item will pack (rows×cols floats, ld apart), a few
// cache lines per microkernel call, so that the sparse products overlap their activation traffic
// with compute: at density 1/8 their packing would otherwise wait on memory for about a third of
// the time (the hardware prefetchers stop at every 4 KB page, i.e. several times per row).
class RowPrefetcher {
 public:
  void reset(const float* p, long ld, int rows, int cols, long calls) {
    base_ = reinterpret_cast<const char*>(p);
    ldBytes_ = ld * (long)sizeof(float);
    lines_ = p && rows > 0 && cols > 0 ? (int)((cols * sizeof(float) + 63) / 64) + 1 : 0;  // +1: unaligned rows
    rows_ = lines_ ? rows : 0;
    row_ = line_ = 0;
    perCall_ = calls > 0 ? (int)(((long)lines_ * rows_ + calls - 1) / calls) : 0;
  }
  // Issues this call's share of the prefetches.
  void step() {
    for (int n = perCall_; n > 0 && row_ < rows_; n--) {
      __builtin_prefetch(base_ + row_ * ldBytes_ + line_ * 64L, 0, 2);
      if (++line_ == lines_) {
        line_ = 0;
        row_++;
      }
    }
  }

 private:
  const char* base_ = nullptr;
  long ldBytes_ = 0;
  int lines_ = 0, rows_ = 0, row_ = 0, line_ = 0, perCall_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Dense GEMM: C[M×N] (=|+=) alpha·op(A)·op(B)
// ---------------------------------------------------------------------------------------------
constexpr int NR_G = NV * VL;
constexpr int NC_SUB = 16 * NR_G;  // columns of one work item; A blocks are re-packed per item

void gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          bool accumulate, float* C, int ldc, int threads) {
  if (M <= 0 || N <= 0) return;
  // Equal-depth passes (K = 1024 runs as 2×512, not 768 + 256).
  const int passes = std::max(1, ceilDiv(K, KC));
  const int kcMax = std::max(1, ((ceilDiv(K, passes) + 7) / 8) * 8);
  // MC: the per-thread A block (MC×KC) should stay in L2.
  const int MC = MR * 12;
  const int nPanels = ceilDiv(N, NR_G);
  float* Bp = tlsB.get((size_t)nPanels * NR_G * kcMax);
  const int mBlocks = ceilDiv(M, MC);
  // Split columns only when there are too few row blocks to keep every thread busy: each split
  // re-packs the A block.
  const int nSubs = mBlocks >= 4 * threads ? 1 : ceilDiv(N, NC_SUB);
  const int panelsPerSub = ceilDiv(nPanels, nSubs);
  const int items = mBlocks * nSubs;
  const int nt = std::max(1, std::min(threads, std::max(items, nPanels)));

  if (K <= 0) {  // C = 0·A·B (+ C)
    if (!accumulate)
      for (int i = 0; i < M; i++) std::fill(C + (long)i * ldc, C + (long)i * ldc + N, 0.f);
    return;
  }

#pragma omp parallel num_threads(nt)
  {
    float* Ap = tlsA.get((size_t)ceilDiv(MC, MR) * MR * kcMax);
    for (int pc = 0; pc < K; pc += kcMax) {
      const int kc = std::min(kcMax, K - pc);
#pragma omp for schedule(static)
      for (int jp = 0; jp < nPanels; jp++) {
        const int j0 = jp * NR_G;
        float* dst = Bp + (long)jp * NR_G * kc;
        if (tb == Trans::No)
          packCopy<NR_G>(dst, B + (long)pc * ldb + j0, ldb, kc, kc, std::min(NR_G, N - j0));
        else
          packTrans(dst, B + (long)j0 * ldb + pc, ldb, kc, kc, NR_G, std::min(NR_G, N - j0));
      }
      // implicit barrier: Bp complete
      const bool acc = accumulate || pc > 0;
#pragma omp for schedule(dynamic, 1)
      for (int item = 0; item < items; item++) {
        const int ib = item / nSubs, js = item % nSubs;
        const int i0 = ib * MC, mc = std::min(MC, M - i0);
        const int mp = ceilDiv(mc, MR);
        for (int p = 0; p < mp; p++) {
          const int r0 = i0 + p * MR;
          const int rv = std::min(MR, M - r0);
          float* dst = Ap + (long)p * MR * kc;
          if (ta == Trans::No)
            packTrans(dst, A + (long)r0 * lda + pc, lda, kc, kc, MR, rv);
          else
            packCopy<MR>(dst, A + (long)pc * lda + r0, lda, kc, kc, rv);
          if (alpha != 1.f)
            for (long q = 0; q < (long)MR * kc; q++) dst[q] *= alpha;
        }
        const int jpBegin = js * panelsPerSub;
        const int jpEnd = std::min(nPanels, jpBegin + panelsPerSub);
        for (int jp = jpBegin; jp < jpEnd; jp++) {
          const int j0 = jp * NR_G;
          const int cols = std::min(NR_G, N - j0);
          const float* bp = Bp + (long)jp * NR_G * kc;
          for (int p = 0; p < mp; p++) {
            const int r0 = i0 + p * MR;
            micro<MR, NV>(1, kc, Ap + (long)p * MR * kc, MR, nullptr, bp, NR_G, C + (long)r0 * ldc + j0, ldc,
                          std::min(MR, M - r0), cols, acc, nullptr);
          }
        }
      }
      // implicit barrier before Bp is overwritten
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Pixelfly forward / dX: C[M × nOuter*b] (=|+=) A[M × K] · (block lists)
//   outer block o (a block-row of W for the forward, a block-column for dX) lists segments
//   s in [segPtr[o], segPtr[o+1]); segment s reads A's columns [segCol[s]*b, +b) and the packed
//   block Bp[jt][s] ([b][NR]).
// ---------------------------------------------------------------------------------------------
template <int NVV>
void blockRowsProduct(int M, const float* A, long lda, int aCols, int aBlocks, int b, int nOuter, const int* segPtr,
                      const int* segCol, int nseg, const float* Bp, float* C, long ldc, int cCols, const float* bias,
                      bool accumulate, int threads, int budgetKB, bool prefetchNext) {
  constexpr int NR = NVV * VL;
  const int jtN = b / NR;
  const int kPad = aBlocks * b;
  // MC: rows per work item; the packed A block (MC × kPad, budgetKB) stays in cache while every
  // outer block streams its weights through it.
  int panels = (int)((budgetKB * 1024L) / ((long)kPad * MR * sizeof(float)));
  panels = std::max(1, std::min(panels, 16));
  const int MC = panels * MR;
  const int items = ceilDiv(M, MC);
  const int nt = std::max(1, std::min(threads, items));

  // Offsets of each segment's panel slice (independent of the row panel).
  std::vector<int>& aoff = tlsOffsets;
  aoff.resize(std::max(nseg, 1));
  for (int s = 0; s < nseg; s++) aoff[s] = segCol[s] * b * MR;

#pragma omp parallel num_threads(nt)
  {
    float* Ap = tlsA.get((size_t)panels * MR * kPad);
#pragma omp for schedule(dynamic, 1)
    for (int item = 0; item < items; item++) {
      const int i0 = item * MC, mc = std::min(MC, M - i0);
      const int mp = ceilDiv(mc, MR);
      for (int p = 0; p < mp; p++) {
        const int r0 = i0 + p * MR;
        packTrans(Ap + (long)p * MR * kPad, A + (long)r0 * lda, lda, kPad, aCols, MR, std::min(MR, M - r0));
      }
      // The item a thread most likely takes next is `nt` items on (dynamic schedule, equal items).
      const int nextI0 = (item + nt) * MC;
      RowPrefetcher pf;
      if (prefetchNext && nextI0 < M) pf.reset(A + (long)nextI0 * lda, lda, std::min(MC, M - nextI0), aCols, (long)nOuter * jtN * mp);
      for (int o = 0; o < nOuter; o++) {
        const int s0 = segPtr[o], ns = segPtr[o + 1] - s0;
        for (int jt = 0; jt < jtN; jt++) {
          const int c0 = o * b + jt * NR;
          if (c0 >= cCols) break;
          const int cols = std::min(NR, cCols - c0);
          const float* bp = Bp + ((long)jt * nseg + s0) * b * NR;
          const float* bb = bias ? bias + c0 : nullptr;
          for (int p = 0; p < mp; p++) {
            const int r0 = i0 + p * MR;
            float* c = C + (long)r0 * ldc + c0;
            if (ns == 0) {
              // An empty block-row/column still defines its outputs: bias (or 0), or unchanged.
              if (!accumulate || bb) {
                for (int i = 0; i < std::min(MR, M - r0); i++)
                  for (int j = 0; j < cols; j++)
                    c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.f) + (bb ? bb[j] : 0.f);
              }
              continue;
            }
            pf.step();
            micro<MR, NVV>(ns, b, Ap + (long)p * MR * kPad, MR, aoff.data() + s0, bp, NR, c, ldc, std::min(MR, M - r0),
                           cols, accumulate, bb);
          }
        }
      }
    }
  }
}

template <int NVV>
void bsrForwardT(const BsrWeight& w, int M, const float* X, int ldx, const float* bias, float* Y, int ldy,
                 bool accumulate, int threads) {
  constexpr int NR = NVV * VL;
  const BsrLayout& L = w.layout;
  const int b = L.block, jtN = b / NR;
  // Bp[jt][k][j][jj] = W_k[jt*NR + jj][j]: block k transposed, so a row of it is NR outputs.
  float* Bp = tlsB.get((size_t)std::max(L.nnz, 1) * b * b);
  const int nt = std::max(1, std::min(threads, L.nnz));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int k = 0; k < L.nnz; k++)
    for (int jt = 0; jt < jtN; jt++)
      packTrans(Bp + ((long)jt * L.nnz + k) * b * NR, w.blocks + (long)k * b * b + (long)jt * NR * b, b, b, b, NR,
                NR);
  blockRowsProduct<NVV>(M, X, ldx, w.in, L.blockCols, b, L.blockRows, L.rowPtr, L.colIdx, L.nnz, Bp, Y, ldy, w.out,
                        bias, accumulate, threads, kForwardBlockKB, true);
}

template <int NVV>
void bsrBackwardDataT(const BsrWeight& w, int M, const float* dY, int lddy, float* dX, int lddx, bool accumulate,
                      int threads) {
  constexpr int NR = NVV * VL;
  const BsrLayout& L = w.layout;
  const int b = L.block, jtN = b / NR;
  // Bp[jt][t][i][jj] = W_{tBlock[t]}[i][jt*NR + jj]: blocks in column order, natural orientation.
  float* Bp = tlsB.get((size_t)std::max(L.nnz, 1) * b * b);
  const int nt = std::max(1, std::min(threads, L.nnz));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int t = 0; t < L.nnz; t++)
    for (int jt = 0; jt < jtN; jt++)
      packCopy<NR>(Bp + ((long)jt * L.nnz + t) * b * NR, w.blocks + (long)L.tBlock[t] * b * b + jt * NR, b, b, b, NR);
  blockRowsProduct<NVV>(M, dY, lddy, w.out, L.blockRows, b, L.blockCols, L.colPtr, L.rowIdx, L.nnz, Bp, dX, lddx, w.in,
                        nullptr, accumulate, threads, kBackwardDataBlockKB, false);
}

// Copies rows [0, kc) of the block-columns `cols` of src (row-major, ld) into tiles
// dst[t][m][b] (tile t for cols[t] - first): row by row, so the source streams like a plain copy.
// Columns at or past `valid` are zero.
inline void packBlockTiles(float* dst, long tileStride, const float* src, long ld, int kc, const int* cols, int nCols,
                           int first, int b, int valid) {
  for (int m = 0; m < kc; m++) {
    const float* row = src + m * ld;
    for (int t = 0; t < nCols; t++) {
      const int c = cols[t];
      float* d = dst + (long)(c - first) * tileStride + (long)m * b;
      const int n = std::min(b, valid - c * b);
      if (n == b) {
        // b is a multiple of VL: inline vector moves (a libc memcpy call per 128-byte piece costs
        // as much as the copy itself).
        const float* s = row + (long)c * b;
        for (int j = 0; j < b; j += VL) storeu(d + j, loadu(s + j));
      } else {
        for (int j = 0; j < b; j++) d[j] = j < n ? row[(long)c * b + j] : 0.f;
      }
    }
  }
}

// dW_k = Σ_m dY[m, r-block]ᵀ ⊗ X[m, c-block] for each kept block k = (r, c).
// Each thread owns a contiguous range of kept blocks (no two threads write the same dW block) and
// walks the rows in chunks of KCW. Per chunk it copies, row by row, the block-columns of X its
// blocks use into tiles Xc[c][m][b] (zero past `in`; they stay in L2 and every kept block of the
// column reuses them). dY is copied one block-row strip at a time (kc × b floats, zero past
// `out`), just before that row's blocks use it, into one small contiguous tile: rows of dY are
// 12-16 KB apart, so uncopied strips fall into a handful of cache sets and thrash, and copying all
// block-rows of a chunk at once (the earlier scheme) pushed X's tiles and dW out of L2. While a
// block-row computes, the next one's strip is prefetched, and the next chunk of X over the whole
// chunk, a few lines per microkernel call, so the copies rarely wait on memory. The chunk
// boundaries do not depend on the thread count, so neither does the summation order. The threads
// never wait for each other (no barrier per chunk), so a thread the OS preempts delays only its
// own blocks.
template <int RW, int NVV>
void bsrBackwardWeightT(const BsrWeight& w, int M, const float* dY, int lddy, const float* X, int ldx, float* dW,
                        bool accumulate, int threads) {
  constexpr int NR = NVV * VL;
  constexpr int KCW = 64;
  const BsrLayout& L = w.layout;
  const int b = L.block, itN = b / RW, jtN = b / NR;
  const long bb = (long)b * b;
  if (L.nnz == 0) return;
  if (M <= 0) {
    if (!accumulate) std::fill(dW, dW + L.nnz * bb, 0.f);
    return;
  }
  const long tile = (long)KCW * b;
  const int nt = std::max(1, std::min(threads, L.nnz));
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), T = omp_get_num_threads();
    const int k0 = (int)((long)L.nnz * tid / T), k1 = (int)((long)L.nnz * (tid + 1) / T);
    if (k0 < k1) {
      const int rFirst = (int)(std::upper_bound(L.rowPtr, L.rowPtr + L.blockRows + 1, k0) - L.rowPtr) - 1;
      const int rLast = (int)(std::upper_bound(L.rowPtr, L.rowPtr + L.blockRows + 1, k1 - 1) - L.rowPtr) - 1;
      std::vector<int> cols;
      std::vector<char> used(L.blockCols, 0);
      for (int k = k0; k < k1; k++) used[L.colIdx[k]] = 1;
      for (int c = 0; c < L.blockCols; c++)
        if (used[c]) cols.push_back(c);
      float* Dc = tlsA.get((size_t)tile * (1 + L.blockCols));  // one dY strip, then X's tiles
      float* Xc = Dc + tile;
      for (int m0 = 0; m0 < M; m0 += KCW) {
        const int kc = std::min(KCW, M - m0);
        packBlockTiles(Xc, tile, X + (long)m0 * ldx, ldx, kc, cols.data(), (int)cols.size(), 0, b, w.in);
        const bool acc = accumulate || m0 > 0;
        RowPrefetcher pfX;
        if (m0 + KCW < M) {
          const int x0 = cols.front() * b, x1 = std::min((cols.back() + 1) * b, w.in);
          pfX.reset(X + (long)(m0 + KCW) * ldx + x0, ldx, std::min(KCW, M - m0 - KCW), x1 - x0,
                    (long)(k1 - k0) * itN * jtN);
        }
        for (int r = rFirst; r <= rLast; r++) {
          const int kb = std::max(k0, L.rowPtr[r]), ke = std::min(k1, L.rowPtr[r + 1]);
          if (kb >= ke) continue;
          // Next strip: the next block-row of this chunk, else the first one of the next chunk.
          RowPrefetcher pfD;
          const int nr = r < rLast ? r + 1 : rFirst;
          const int nm0 = r < rLast ? m0 : m0 + KCW;
          if (nm0 < M && nr * b < w.out)
            pfD.reset(dY + (long)nm0 * lddy + (long)nr * b, lddy, std::min(KCW, M - nm0), std::min(b, w.out - nr * b),
                      (long)(ke - kb) * itN * jtN);
          packBlockTiles(Dc, tile, dY + (long)m0 * lddy, lddy, kc, &r, 1, r, b, w.out);
          const float* dt = Dc;
          const long sa = b;
          for (int k = kb; k < ke; k++) {
            const float* xt = Xc + L.colIdx[k] * tile;
            for (int it = 0; it < itN; it++)
              for (int jt = 0; jt < jtN; jt++) {
                pfD.step();
                pfX.step();
                micro<RW, NVV>(1, kc, dt + it * RW, sa, nullptr, xt + jt * NR, b,
                               dW + k * bb + (long)it * RW * b + jt * NR, b, RW, NR, acc, nullptr);
              }
          }
        }
      }
    }
  }
}

// Block 16 on AVX-512 is one vector wide; otherwise tiles are NV vectors.
constexpr bool kNarrowBlocks16 = (NV * VL > 16);

void bsrForward(const BsrWeight& w, int M, const float* X, int ldx, const float* bias, float* Y, int ldy,
                bool accumulate, int threads) {
  if (kNarrowBlocks16 && w.layout.block == 16)
    bsrForwardT<1>(w, M, X, ldx, bias, Y, ldy, accumulate, threads);
  else
    bsrForwardT<NV>(w, M, X, ldx, bias, Y, ldy, accumulate, threads);
}

void bsrBackwardData(const BsrWeight& w, int M, const float* dY, int lddy, float* dX, int lddx, bool accumulate,
                     int threads) {
  if (kNarrowBlocks16 && w.layout.block == 16)
    bsrBackwardDataT<1>(w, M, dY, lddy, dX, lddx, accumulate, threads);
  else
    bsrBackwardDataT<NV>(w, M, dY, lddy, dX, lddx, accumulate, threads);
}

void bsrBackwardWeight(const BsrWeight& w, int M, const float* dY, int lddy, const float* X, int ldx, float* dW,
                       bool accumulate, int threads) {
  if (kNarrowBlocks16 && w.layout.block == 16)
    bsrBackwardWeightT<16, 1>(w, M, dY, lddy, X, ldx, dW, accumulate, threads);
  else
    bsrBackwardWeightT<MR_DW, NV>(w, M, dY, lddy, X, ldx, dW, accumulate, threads);
}

}  // namespace
}  // namespace ISA_NS

extern const KernelTable ISA_TABLE = {
    ISA_NS::bsrForward,
    ISA_NS::bsrBackwardData,
    ISA_NS::bsrBackwardWeight,
    ISA_NS::gemm,
};

}  // namespace kernels
}  // namespace pixelfly
