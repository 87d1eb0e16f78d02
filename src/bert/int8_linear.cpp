// Linear layers with int8 weights for CPU inference, as PyTorch's dynamic
// quantization (`torch.ao.quantization.quantize_dynamic`) runs them: weights
// quantized once per output channel (symmetric int8), activations quantized
// per batch inside fbgemm's kernel, products accumulated in int32, results in
// fp32. The operators (`quantized::linear_prepack`, `quantized::linear_dynamic`)
// are registered with libtorch's dispatcher but not in the C API that tch
// wraps, and their packed weight is a TorchScript custom class, so it is held
// here as an opaque IValue.
//
// Every function catches C++ exceptions and reports them in `err`.

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>
#include <ATen/core/stack.h>
#include <ATen/ops/quantize_per_channel.h>
#include <ATen/ops/zeros.h>

#include "../shim.h"

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
// hpcml_int8_linear_pack; the activations quantized to 7 bits, as PyTorch's
// dynamic linear does on fbgemm (`reduce_range`: AVX2's 8-bit multiply-adds
// would saturate their 16-bit sums at 8). A new tensor in `*out`. 0 on success.
int hpcml_int8_linear(const at::Tensor* x, const void* packed, at::Tensor** out, char* err, size_t err_len) {
  return hpcml::new_tensor(out, err, err_len, [&] {
    torch::jit::Stack stack{c10::IValue(x->contiguous()), *static_cast<const c10::IValue*>(packed), c10::IValue(true)};
    op("quantized::linear_dynamic").callBoxed(&stack);
    return stack.at(0).toTensor();
  });
}

void hpcml_int8_linear_free(void* packed) {
  delete static_cast<c10::IValue*>(packed);
}

}  // extern "C"
