// Linear layers with int8 weights for CPU inference, as PyTorch's dynamic
// quantization (`torch.ao.quantization.quantize_dynamic`) runs them: weights
// quantized once per output channel (symmetric int8), activations quantized
// on the fly inside fbgemm's kernel, products accumulated in int32, results
// in fp32. The operators (`quantized::linear_prepack`, `quantized::linear_dynamic`)
// are registered with libtorch's dispatcher but not in the C API that tch
// wraps, and their packed weight is a TorchScript custom class, so it is held
// here as an opaque IValue.
//
// One difference from PyTorch: the activations of each text (each example of
// a `[batch, len, in]` input, over its own tokens) get their own quantization
// range, where `linear_dynamic` takes one range for the whole batch. A text's
// result then no longer depends on the texts batched with it or on its
// padding, and the texts run in parallel: linear_dynamic finds its range on
// one thread while the others wait, and splits the rows of short batches
// unevenly. The products are fbgemm's, called as linear_dynamic calls them.
//
// Every function catches C++ exceptions and reports them in `err`.

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>
#include <ATen/core/stack.h>
#include <ATen/ops/quantize_per_channel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../shim.h"

#if defined(__x86_64__)
// The packed weight's layout (fbgemm's packed matrix, column offsets, scales)
// is declared only where libtorch is built with fbgemm, as x86 wheels are.
#define USE_FBGEMM 1
#include <ATen/native/quantized/cpu/fbgemm_utils.h>
#endif

namespace {

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

// libtorch 2.13 warns on stderr, once per process, that quantized tensors are
// deprecated; the warning is for Python users of the API, not for a user of
// --int8, whom it would only puzzle. Whether the operators are still there
// is checked by hpcml_int8_linear_available.
struct Quiet : c10::WarningHandler {
  void process(const c10::Warning&) override {}
};

#if defined(__x86_64__)

// `x W^T + b` for x `[batch, len, in]` (or `[rows, in]`, one group), each
// example quantized over its first `lengths[b]` rows (null: all), its other
// rows zero. Activations are 7-bit unsigned (`reduce_range`, as
// linear_dynamic on fbgemm: AVX2's 8-bit multiply-adds would saturate their
// 16-bit sums at 8).
at::Tensor per_example(const at::Tensor& x0, const PackedLinearWeight& w, const at::Tensor* lengths) {
  TORCH_CHECK(x0.scalar_type() == at::kFloat && x0.device().is_cpu() && (x0.dim() == 2 || x0.dim() == 3),
              "int8 linear takes a [batch, len, in] or [rows, in] fp32 tensor on the CPU");
  TORCH_CHECK(w.q_scheme == c10::kPerChannelAffine, "int8 linear: the weight is not quantized per channel");
  const at::Tensor x = x0.contiguous();
  const int64_t in = x.size(-1), out_features = w.w->numCols();
  TORCH_CHECK(in == w.w->numRows(), "int8 linear: the input has ", in, " features where the weight takes ",
              w.w->numRows());
  const int64_t groups = x.dim() == 3 ? x.size(0) : 1, rows = x.dim() == 3 ? x.size(1) : x.size(0);
  std::vector<int64_t> used(groups, rows);
  if (lengths != nullptr) {
    TORCH_CHECK(lengths->numel() == groups && lengths->scalar_type() == at::kLong,
                "int8 linear: lengths must hold one int64 per example");
    const at::Tensor l = lengths->contiguous();
    for (int64_t g = 0; g < groups; ++g) used[g] = std::clamp<int64_t>(l.data_ptr<int64_t>()[g], 0, rows);
  }
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = out_features;
  at::Tensor out = at::empty(sizes, x.options());
  const float* bias = w.bias_.has_value() ? w.bias_->data_ptr<float>() : nullptr;
  const float* xp = x.data_ptr<float>();
  float* op = out.data_ptr<float>();
  // Fewer examples than threads (one text to predict): each example's rows
  // are shared out as fbgemm shares a product's.
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t tasks = groups >= threads ? 1 : (threads + groups - 1) / groups;
  at::parallel_for(0, groups * tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> accumulators;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t g = u / tasks, task = u % tasks, m = used[g];
      const float* a = xp + g * rows * in;
      float* c = op + g * rows * out_features;
      if (task == 0) std::fill(c + m * out_features, c + rows * out_features, 0.0f);
      if (m == 0) continue;
      float lo = 0.0f, hi = 0.0f;
      fbgemm::FindMinMax(a, &lo, &hi, m * in);
      const fbgemm::TensorQuantizationParams q = fbgemm::ChooseQuantizationParams(lo, hi, 0, 127);
      fbgemm::PackAWithQuantRowOffset<uint8_t> packed_a(fbgemm::matrix_op_t::NoTranspose, static_cast<int>(m),
                                                        static_cast<int>(in), a, static_cast<int>(in), nullptr,
                                                        q.scale, q.zero_point);
      fbgemm::DoNothing<float, float> done;
      // int32 sums -> fp32: row and column offsets, both scales, the bias.
      fbgemm::ReQuantizeForFloat<false, fbgemm::QuantizationGranularity::OUT_CHANNEL> to_float(
          done, q.scale, w.w_scale.data(), q.zero_point, w.w_zp.data(), packed_a.getRowOffsetBuffer(),
          w.col_offsets.data(), bias, static_cast<uint32_t>(out_features));
      accumulators.resize(m * out_features);
      fbgemm::fbgemmPacked(packed_a, *w.w, c, accumulators.data(), static_cast<int32_t>(out_features), to_float,
                           static_cast<int>(task), static_cast<int>(tasks));
    }
  });
  return out;
}

#endif  // __x86_64__

}  // namespace

extern "C" {

// 1 when this libtorch has both operators, else 0.
int hpcml_int8_linear_available() {
  return hpcml::has_ops({"quantized::linear_prepack", "quantized::linear_dynamic"});
}

// Quantizes `weight` ([out, in], fp32, CPU) per output channel with the scale
// max|w| / 127.5 (what PyTorch's symmetric int8 observers choose) and packs it
// with `bias` for fbgemm. The packed weight goes to `*out`; free it with
// hpcml_int8_linear_free. 0 on success.
int hpcml_int8_linear_pack(const at::Tensor* weight, const at::Tensor* bias, void** out, char* err, size_t err_len) {
  return hpcml::guarded(err, err_len, [&] {
    Quiet quiet;
    c10::WarningUtils::WarningHandlerGuard guard(&quiet);
    at::Tensor w = weight->detach().to(at::kFloat).contiguous();
    at::Tensor scales = w.abs().amax({1}).div(127.5).clamp_min(1.1920929e-07).to(at::kDouble);
    at::Tensor zero_points = at::zeros({w.size(0)}, at::TensorOptions().dtype(at::kLong));
    at::Tensor q = at::quantize_per_channel(w, scales, zero_points, 0, at::kQInt8);
    torch::jit::Stack stack{c10::IValue(q), c10::IValue(bias->detach().to(at::kFloat).contiguous())};
    op("quantized::linear_prepack").callBoxed(&stack);
    *out = new c10::IValue(stack.at(0));
  });
}

// `x W^T + b` over the last dimension of `x` (fp32) with a weight from
// hpcml_int8_linear_pack, each example of `x` quantized over its first
// `lengths` rows (null: all; see per_example). Where the packed weight is not
// fbgemm's, or `per_text` is 0, linear_dynamic runs it with one range for
// the whole input. A new tensor in `*out`. 0 on success.
int hpcml_int8_linear(const at::Tensor* x, const void* packed, const at::Tensor* lengths, int per_text,
                      at::Tensor** out, char* err, size_t err_len) {
  return hpcml::new_tensor(out, err, err_len, [&] {
    const c10::IValue& weight = *static_cast<const c10::IValue*>(packed);
#if defined(__x86_64__)
    const auto params = weight.toCustomClass<LinearPackedParamsBase>();
    const auto* fbgemm_weight = dynamic_cast<const PackedLinearWeight*>(params.get());
    if (per_text != 0 && fbgemm_weight != nullptr) return per_example(*x, *fbgemm_weight, lengths);
#endif
    torch::jit::Stack stack{c10::IValue(x->contiguous()), weight, c10::IValue(true)};
    op("quantized::linear_dynamic").callBoxed(&stack);
    return stack.at(0).toTensor();
  });
}

void hpcml_int8_linear_free(void* packed) {
  delete static_cast<c10::IValue*>(packed);
}

}  // extern "C"
