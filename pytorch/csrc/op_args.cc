#include "op_args.h"

#include "kernels/block_sizes.h"

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace pixelfly {
namespace torch_ops {

namespace k = kernels;

void requireActivation(const char* name, const Tensor& t, int64_t cols, const at::Device& device) {
  TORCH_CHECK(t.device() == device, name, ": expected a tensor on ", device, ", got one on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, ": expected float32, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 2, name, ": expected a 2-D tensor [rows × features], got ", t.dim(), " dimensions");
  TORCH_CHECK(t.is_contiguous(), name, ": must be contiguous");
  TORCH_CHECK(t.size(0) <= INT32_MAX, name, ": ", t.size(0), " rows exceed the kernels' int32 range");
  if (cols >= 0) TORCH_CHECK(t.size(1) == cols, name, ": expected ", cols, " features, got ", t.size(1));
}

void requireParam(const char* name, const Tensor& t, at::IntArrayRef shape, const at::Device& device) {
  TORCH_CHECK(t.device() == device, name, ": expected a tensor on ", device, ", got one on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, ": expected float32, got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == shape, name, ": expected shape ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), name, ": must be contiguous");
}

int64_t blockOf(const Tensor& blocks) {
  TORCH_CHECK(blocks.dim() == 3 && blocks.size(1) == blocks.size(2), "blocks: expected [nnz, block, block], got ",
              blocks.sizes());
  return blocks.size(1);
}

namespace {

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

k::BsrLayout viewOf(const BsrIndex& ix) {
  k::BsrLayout L;
  L.block = ix.block;
  L.blockRows = ix.blockRows;
  L.blockCols = ix.blockCols;
  L.nnz = ix.nnz;
  L.rowPtr = ix.rowPtr.data();
  L.colIdx = ix.colIdx.data();
  L.colPtr = ix.colPtr.data();
  L.rowIdx = ix.rowIdx.data();
  L.tBlock = ix.tBlock.data();
  return L;
}

// Every distinct index seen, checked once: a model has a few dozen, each a few KB.
std::mutex gIndexMutex;
std::unordered_map<std::string, std::unique_ptr<BsrIndex>> gIndexes;

const BsrIndex& indexFor(const int32_t* p, int64_t block, int64_t br, int64_t bc, int64_t nnz) {
  const size_t n = static_cast<size_t>(br + bc + 2 + 3 * nnz);
  std::string key(reinterpret_cast<const char*>(p), n * sizeof(int32_t));
  key.append(reinterpret_cast<const char*>(&block), sizeof block);
  std::lock_guard<std::mutex> lock(gIndexMutex);
  auto& slot = gIndexes[key];
  if (!slot) {
    auto ix = std::make_unique<BsrIndex>();
    auto take = [&](std::vector<int32_t>& v, int64_t count) {
      v.assign(p, p + count);
      p += count;
    };
    ix->block = static_cast<int>(block);
    ix->blockRows = static_cast<int>(br);
    ix->blockCols = static_cast<int>(bc);
    ix->nnz = static_cast<int>(nnz);
    take(ix->rowPtr, br + 1);
    take(ix->colIdx, nnz);
    take(ix->colPtr, bc + 1);
    take(ix->rowIdx, nnz);
    take(ix->tBlock, nnz);
    const std::string err = k::validateLayout(viewOf(*ix));
    if (!err.empty()) {
      gIndexes.erase(key);
      TORCH_CHECK(false, "index: ", err);
    }
    slot = std::move(ix);
  }
  return *slot;
}

}  // namespace

Layout::Layout(const Tensor& packed, int64_t block, int64_t out_, int64_t in_, int64_t nnz) {
  TORCH_CHECK(packed.device().is_cpu() && packed.scalar_type() == at::kInt && packed.dim() == 1 && packed.is_contiguous(),
              "index: expected a contiguous 1-D int32 CPU tensor (pixelfly_torch.layout.block_index)");
  TORCH_CHECK(kernels::kernelBlock((int)block), "block: the kernels implement ", kernels::kernelBlocksText(), ", got ", block);
  TORCH_CHECK(out_ >= 1 && out_ <= INT32_MAX && in_ >= 1 && in_ <= INT32_MAX, "out/in features must be in 1..2^31-1, got ",
              out_, "/", in_);
  const int64_t br = ceilDiv(out_, block), bc = ceilDiv(in_, block);
  const int64_t rest = packed.numel() - br - bc - 2;
  if (nnz < 0) {
    TORCH_CHECK(rest >= 0 && rest % 3 == 0, "index: ", packed.numel(), " entries do not fit ", br, "x", bc,
                " blocks (expected block_rows + block_cols + 2 + 3·nnz)");
    nnz = rest / 3;
  }
  TORCH_CHECK(rest == 3 * nnz, "index: ", packed.numel(), " entries, expected ", br + bc + 2 + 3 * nnz, " for ", br, "x", bc,
              " blocks of ", block, " with ", nnz, " kept");
  index = &indexFor(packed.data_ptr<int32_t>(), block, br, bc, nnz);
  out = static_cast<int>(out_);
  in = static_cast<int>(in_);
}

k::BsrWeight Layout::weight(const float* blocks) const {
  k::BsrWeight w;
  w.layout = viewOf(*index);
  w.out = out;
  w.in = in;
  w.blocks = blocks;
  return w;
}

namespace {

// The layer's arrays as tensors on the activations' device: the saved ones go back to Python for
// autograd to keep.
struct TensorMemory final : PixelflyMemory {
  explicit TensorMemory(at::TensorOptions o) : opts(o) {}
  at::TensorOptions opts;
  std::array<Tensor, kPixelflySlots> slots;
  float* get(PixelflySlot slot, size_t n) override {
    Tensor& t = slots[static_cast<int>(slot)];
    if (!t.defined()) t = at::empty({static_cast<int64_t>(n)}, opts);
    TORCH_CHECK(static_cast<size_t>(t.numel()) >= n, "saved: slot ", static_cast<int>(slot), " holds ", t.numel(),
                " floats, the layer needs ", n);
    return t.data_ptr<float>();
  }
};

struct LayerArgs {
  Layout layout;
  PixelflyLinearShape shape;
  PixelflyLinearParams params;
};

// withData false: shapes and the index only (meta tensors have sizes but no data to point at).
LayerArgs layerArgs(const Tensor& x, const Tensor& blocks, const Tensor& index, int64_t out, const optional<Tensor>& bias,
                    const optional<Tensor>& lr1, const optional<Tensor>& lr2, const optional<Tensor>& gw,
                    const optional<Tensor>& gb, bool withData = true) {
  const at::Device dev = x.device();
  requireActivation("x", x, -1, dev);
  const int64_t in = x.size(1), b = blockOf(blocks);
  LayerArgs a{Layout(index, b, out, in, blocks.size(0)), {}, {}};
  requireParam("blocks", blocks, {a.layout.index->nnz, b, b}, dev);
  const bool lowRank = lr1.has_value();
  TORCH_CHECK(lowRank == lr2.has_value() && lowRank == gw.has_value() && lowRank == gb.has_value(),
              "lr_weight1, lr_weight2, gate_weight and gate_bias: give all four (rank > 0) or none (rank 0)");
  const int64_t rank = lowRank ? lr1->size(0) : 0;
  a.shape = {a.layout.shape(), static_cast<int>(rank)};
  if (withData) a.params.blocks = blocks.data_ptr<float>();
  if (lowRank) {
    TORCH_CHECK(rank >= 1, "lr_weight1: rank must be >= 1");
    requireParam("lr_weight1", *lr1, {rank, in}, dev);
    requireParam("lr_weight2", *lr2, {out, rank}, dev);
    requireParam("gate_weight", *gw, {1, in}, dev);
    requireParam("gate_bias", *gb, {1}, dev);
    if (withData) {
      a.params.V = lr1->data_ptr<float>();
      a.params.U = lr2->data_ptr<float>();
      a.params.gw = gw->data_ptr<float>();
      a.params.gb = gb->data_ptr<float>();
    }
  }
  if (bias) {
    requireParam("bias", *bias, {out}, dev);
    if (withData) a.params.bias = bias->data_ptr<float>();
  }
  return a;
}

}  // namespace

std::tuple<Tensor, std::vector<Tensor>> linearForward(Backend& be, const Tensor& x, const Tensor& blocks, const Tensor& index,
                                                      int64_t out, const optional<Tensor>& bias, const optional<Tensor>& lr1,
                                                      const optional<Tensor>& lr2, const optional<Tensor>& gw,
                                                      const optional<Tensor>& gb) {
  const LayerArgs a = layerArgs(x, blocks, index, out, bias, lr1, lr2, gw, gb);
  Tensor y = at::empty({x.size(0), out}, x.options());
  TensorMemory mem(x.options());
  pixelflyLinearForward(be, a.shape, static_cast<int>(x.size(0)), x.data_ptr<float>(), a.params, mem, y.data_ptr<float>());
  // Slots this shape does not use go back empty (a Tensor[] cannot hold None).
  std::vector<Tensor> saved;
  for (int i = 0; i < kPixelflySavedSlots; i++) saved.push_back(mem.slots[i].defined() ? mem.slots[i] : at::empty({0}, x.options()));
  return {y, saved};
}

std::tuple<Tensor, std::vector<Tensor>> linearForwardShapes(const Tensor& x, const Tensor& blocks, const Tensor& index,
                                                            int64_t out, const optional<Tensor>& bias, const optional<Tensor>& lr1,
                                                            const optional<Tensor>& lr2, const optional<Tensor>& gw,
                                                            const optional<Tensor>& gb) {
  const LayerArgs a = layerArgs(x, blocks, index, out, bias, lr1, lr2, gw, gb, false);
  const int M = static_cast<int>(x.size(0));
  std::vector<Tensor> saved;
  for (int i = 0; i < kPixelflySavedSlots; i++)
    saved.push_back(at::empty({static_cast<int64_t>(pixelflySlotSize(a.shape, static_cast<PixelflySlot>(i), M))}, x.options()));
  return {at::empty({x.size(0), out}, x.options()), saved};
}

std::vector<Tensor> linearBackward(Backend& be, const Tensor& dy, const Tensor& x, const Tensor& blocks, const Tensor& index,
                                   const optional<Tensor>& bias, const optional<Tensor>& lr1, const optional<Tensor>& lr2,
                                   const optional<Tensor>& gw, const optional<Tensor>& gb, at::TensorList saved,
                                   bool inputGrad) {
  requireActivation("dy", dy, -1, x.device());
  TORCH_CHECK(dy.size(0) == x.size(0), "dy and x: ", dy.size(0), " and ", x.size(0), " rows differ");
  const LayerArgs a = layerArgs(x, blocks, index, dy.size(1), bias, lr1, lr2, gw, gb);
  TORCH_CHECK(saved.size() == kPixelflySavedSlots, "saved: expected the forward's ", kPixelflySavedSlots, " tensors, got ",
              saved.size());
  const int M = static_cast<int>(x.size(0));
  TensorMemory mem(x.options());
  for (int i = 0; i < kPixelflySavedSlots; i++) {
    const Tensor& t = saved[i];
    const size_t need = pixelflySlotSize(a.shape, static_cast<PixelflySlot>(i), M);
    if (need == 0) continue;
    TORCH_CHECK(t.defined() && t.device() == x.device() && t.scalar_type() == at::kFloat && t.is_contiguous() &&
                    static_cast<size_t>(t.numel()) == need,
                "saved[", i, "]: not what the forward saved for these shapes");
    mem.slots[i] = t;
  }
  Tensor dx = inputGrad ? at::empty({M, x.size(1)}, x.options()) : Tensor();
  auto zerosLike = [&](const optional<Tensor>& p) { return p ? at::zeros(p->sizes(), x.options()) : Tensor(); };
  Tensor dblocks = at::zeros(blocks.sizes(), x.options());
  Tensor dbias = zerosLike(bias), dV = zerosLike(lr1), dU = zerosLike(lr2), dgw = zerosLike(gw), dgb = zerosLike(gb);
  auto ptr = [](Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; };
  PixelflyLinearGrads g;
  g.blocks = ptr(dblocks);
  g.bias = ptr(dbias);
  g.V = ptr(dV);
  g.U = ptr(dU);
  g.gw = ptr(dgw);
  g.gb = ptr(dgb);
  pixelflyLinearBackward(be, a.shape, M, x.data_ptr<float>(), dy.data_ptr<float>(), a.params, mem, g, ptr(dx));
  return {dx, dblocks, dbias, dV, dU, dgw, dgb};
}

}  // namespace torch_ops
}  // namespace pixelfly
