// The CPU backend's layer loops (everything but the products, which are the kernels of issue 3):
// OpenMP over samples, rows or fixed chunks, the vector work in pointwise.h. Every split depends only
// on sizes and the thread count, so results are deterministic for a given thread count. The
// operations and their meaning are Backend's (backend.h).
#pragma once
#include <cstdint>

#include "backend.h"

namespace pixelfly {
namespace cpu {

void geluForward(const float* x, float* y, int64_t n);
void geluBackward(const float* x, const float* dy, float* dx, int64_t n);
void add(const float* a, const float* b, float* y, int64_t n);
void addTo(float* y, const float* a, int64_t n);
void layerNormForward(int M, int D, const float* x, const float* g, const float* b, float* y, float* mean, float* rstd);
void layerNormBackward(int M, int D, const float* x, const float* dy, const float* g, const float* mean, const float* rstd,
                       float* dx, float* dg, float* db);
void transpose(int B, int T, int D, const float* x, float* y);
void patchify(int B, int C, int H, int W, int p, const float* src, float* dst, bool backward);
void poolForward(int B, int T, int D, bool first, const float* x, float* y);
void poolBackward(int B, int T, int D, bool first, const float* dy, float* dx);
void tokenPosEmbeddingForward(int B, int T, int D, const float* ids, const float* wte, const float* wpe, float* y);
void tokenPosEmbeddingBackward(int B, int T, int D, const float* ids, const float* dy, float* dwte, float* dwpe);
void clsTokenForward(int B, int T, int D, const float* cls, const float* x, float* y);
void clsTokenBackward(int B, int T, int D, const float* dy, float* dcls, float* dx);
void posEmbeddingForward(int B, int64_t n, const float* x, const float* pos, float* y);
void posEmbeddingBackward(int B, int64_t n, const float* dy, float* dpos, float* dx);
void attentionForward(int B, int T, int D, int H, bool causal, const float* qkv, float* att, float* ctx);
void attentionBackward(int B, int T, int D, int H, bool causal, const float* qkv, const float* att, const float* dctx,
                       float* dqkv);
void pixelflyGate(int M, const float* x, int in, const float* gw, const float* gb, const float* h, int rank, float* gate,
                  float* hs, float* xs);
void pixelflyLerpRows(int M, float* y, int out, const float* gate, const float* bias, const float* hs, const float* Ut,
                      int rank);
void pixelflyMixBackward(int M, const float* x, int in, const float* gw, const float* V, const float* h, int rank,
                         const float* gate, float* dx, float* dh, float* dz, float* dgw);
void scaleRowsOneMinus(int M, const float* a, int n, const float* gate, float* dst);
double softmaxCrossEntropy(int rows, int classes, const float* logits, const int32_t* targets, float* dlogits,
                           int64_t* correct);
double sumOfSquares(const float* x, int64_t n);
void adamw(int64_t n, float* p, const float* g, float* m, float* v, const AdamStep& s);

}  // namespace cpu
}  // namespace pixelfly
