// Choosing the engine's compute backend: the CPU kernels, or the CUDA backend when this addon was
// built with nvcc and a usable device is present.
#pragma once
#include <memory>
#include <string>

#include "engine/backend.h"

namespace pixelfly {

// "auto": CUDA when available, else the CPU; "cpu": always the CPU; "cuda": CUDA or
// std::invalid_argument saying why it is unavailable. Any other name: std::invalid_argument.
// Each CUDA backend is a new one with its own stream, cuBLAS handle and scratch (a model owns one,
// so each job runs on its own stream); the CPU backend is shared.
// `precision` is the products' input precision: "fp32", "bf16" (CUDA tensor cores; on the CPU AMX
// tiles, vdpbf16ps, or fp32 kernels on rounded inputs) or "fp16" (CUDA only), with fp32
// accumulation; weights, gradients and optimizer state stay fp32, like torch.autocast. Other
// values, or fp16 on the CPU: std::invalid_argument (see checkPrecision).
std::shared_ptr<Backend> createBackend(const std::string& requested, const std::string& precision = "fp32");

// A CUDA backend whose work goes on `stream`, a cudaStream_t its owner keeps alive (PyTorch's
// current stream, so the operators are ordered with the tensors' other work), on `device`. Its
// block indexes are cached by address: the caller keeps each BsrIndex alive and unchanged for as
// long as the backend is used. Throws std::invalid_argument when CUDA is unavailable.
std::shared_ptr<Backend> cudaBackendOnStream(int device, void* stream, const std::string& precision = "fp32");

// Throws std::invalid_argument unless `precision` can run on the resolved backend ("cpu" | "cuda").
void checkPrecision(const std::string& backend, const std::string& precision);

// The name "auto"/"cpu"/"cuda" resolves to ("cuda" or "cpu") without creating anything; throws
// std::invalid_argument like createBackend.
const char* resolveBackendName(const std::string& requested);

// The backend a model gets when its options name none: $PIXELFLY_BACKEND, else "auto" (the daemon's
// setting to force the CPU on a GPU machine sets PIXELFLY_BACKEND=cpu).
std::string defaultBackendName();

// Why CUDA cannot be used here ("" when it can): not compiled in, no driver, no device, too old.
std::string cudaUnavailableReason();

}  // namespace pixelfly
