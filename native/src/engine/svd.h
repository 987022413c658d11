// Truncated SVD for the low-rank factors' initialisation (authors' LowRank(init='svd')).
#pragma once
#include "rng.h"

namespace pixelfly {

// A is rows×cols (row-major). Writes the best rank-`rank` factors with the singular values split
// evenly: U·diag(√σ) into u [rows×rank] and diag(√σ)·Vᵀ into vt [rank×cols], so u·vt ≈ A.
// Randomised range finder with power iterations (Halko et al. 2011): exact enough for an init,
// and O(rows·cols·rank) instead of a full decomposition.
void truncatedSvdFactors(const float* a, int rows, int cols, int rank, Rng& rng, float* u, float* vt);

}  // namespace pixelfly
