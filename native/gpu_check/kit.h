// The layouts file scripts/gpu-check.mjs writes (its header comment gives the format): block
// indexes made by core/ in TypeScript, read here as they are (this program never derives a mask).
#pragma once
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "kernels/kernels.h"

namespace pixelfly {
namespace gpucheck {

struct KitLayout {
  std::string role;  // "bench": timed against cuBLAS; "plan": a layer of the Mixer's plan
  std::string name;
  int out = 0, in = 0, rank = 0;
  BsrIndex index;
  kernels::BsrLayout view() const {
    return {index.block,         index.blockRows,     index.blockCols,     index.nnz,          index.rowPtr.data(),
            index.colIdx.data(), index.colPtr.data(), index.rowIdx.data(), index.tBlock.data()};
  }
};

struct Kit {
  int m = 0, repeats = 0;                    // the timed products' rows and repeats
  std::map<std::string, std::string> model;  // ModelConfig fields of the Mixer (name -> value)
  std::vector<KitLayout> layouts;
};

class KitReader {
 public:
  explicit KitReader(const std::string& path) : path_(path), in_(path) {
    if (!in_) throw std::runtime_error(path + ": cannot open the layouts file (write it with `node scripts/gpu-check.mjs`)");
  }

  Kit read() {
    Kit kit;
    std::string line, magic;
    int version = 0;
    std::getline(in_, line);
    line_ = 1;
    std::istringstream hs(line);
    if (!(hs >> magic >> version) || magic != "pixelfly-gpu-kit" || version != 1)
      fail("not a layouts file of scripts/gpu-check.mjs (expected 'pixelfly-gpu-kit 1' on the first line)");
    while (std::getline(in_, line)) {
      line_++;
      std::istringstream ls(line);
      std::string kind;
      if (!(ls >> kind)) continue;
      if (kind == "bench") {
        kit.m = integer(ls, "bench M", 1, 1 << 20);
        kit.repeats = integer(ls, "bench repeats", 1, 1000);
      } else if (kind == "model") {
        std::string k, v;
        while (ls >> k) {
          if (!(ls >> v)) fail("model: field '" + k + "' has no value");
          kit.model[k] = v;
        }
      } else if (kind == "layout") {
        kit.layouts.push_back(layout(ls));
      } else {
        fail("unknown section '" + kind + "' (expected bench, model or layout)");
      }
    }
    if (kit.m == 0) fail("no 'bench M repeats' line");
    if (kit.layouts.empty()) fail("no layouts");
    return kit;
  }

 private:
  std::string path_;
  std::ifstream in_;
  int line_ = 0;

  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error(path_ + ":" + std::to_string(line_) + ": " + why);
  }
  int integer(std::istream& s, const std::string& what, long lo, long hi) {
    long v;
    if (!(s >> v)) fail(what + ": expected an integer");
    if (v < lo || v > hi) fail(what + ": " + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<int>(v);
  }
  std::vector<int32_t> ints(const std::string& what, int n) {
    std::string line;
    if (!std::getline(in_, line)) fail(what + ": missing line");
    line_++;
    std::istringstream ls(line);
    std::vector<int32_t> a;
    long v;
    while (ls >> v) a.push_back(static_cast<int32_t>(v));
    if (!ls.eof()) fail(what + ": not an integer list");
    if (static_cast<int>(a.size()) != n) fail(what + ": " + std::to_string(a.size()) + " values, expected " + std::to_string(n));
    return a;
  }
  KitLayout layout(std::istream& ls) {
    KitLayout l;
    if (!(ls >> l.role >> l.name) || (l.role != "bench" && l.role != "plan")) fail("layout: expected 'layout bench|plan NAME ...'");
    const std::string at = "layout " + l.name;
    l.out = integer(ls, at + " out", 1, 1 << 20);
    l.in = integer(ls, at + " in", 1, 1 << 20);
    BsrIndex& ix = l.index;
    ix.block = integer(ls, at + " block", 1, 1024);
    ix.blockRows = integer(ls, at + " blockRows", 1, 1 << 20);
    ix.blockCols = integer(ls, at + " blockCols", 1, 1 << 20);
    ix.nnz = integer(ls, at + " nnz", 0, 1 << 30);
    l.rank = integer(ls, at + " rank", 0, 1 << 20);
    ix.rowPtr = ints(at + " rowPtr", ix.blockRows + 1);
    ix.colIdx = ints(at + " colIdx", ix.nnz);
    ix.colPtr = ints(at + " colPtr", ix.blockCols + 1);
    ix.rowIdx = ints(at + " rowIdx", ix.nnz);
    ix.tBlock = ints(at + " tBlock", ix.nnz);
    std::string why = kernels::validateLayout(l.view());
    if (why.empty()) why = kernels::validateWeightShape(l.view(), l.out, l.in);
    if (!why.empty()) fail(at + ": " + why);
    return l;
  }
};

}  // namespace gpucheck
}  // namespace pixelfly
