// Linear layers on oneDNN with packed weights, for inference and training.
//
// libtorch runs fp32 `linear` through MKL's sgemm, which on AMD's Zen 4 cores
// reaches about 80-90% of what oneDNN's inner product does on a packed weight,
// and on Zen 5 less than half (benches/python/onednn_linear.py).
// libtorch carries that path for its own graph freezing
// (`mkldnn::_reorder_linear_weight` and `mkldnn::_linear_pointwise`),
// registered with the dispatcher but not in the C API that tch wraps; these
// functions reach it by name. For training, a custom autograd function packs
// the weight at each call and computes the input's gradient the same way
// (x's is a product by W, a linear layer with weight W^T); the weight's
// gradient, a product over all rows, stays with MKL, which does it better.
//
// Every function catches C++ exceptions (they must not cross into Rust) and
// reports them as a message in `err`.

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>
#include <ATen/core/stack.h>
#include <torch/csrc/autograd/custom_function.h>

#include <optional>
#include <string>

#include "../shim.h"

namespace {

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

at::Tensor pack(const at::Tensor& weight) {
  torch::jit::Stack stack{c10::IValue(weight), c10::IValue()};
  op("mkldnn::_reorder_linear_weight").callBoxed(&stack);
  return stack.at(0).toTensor();
}

at::Tensor pointwise(const at::Tensor& x, const at::Tensor& packed, const std::optional<at::Tensor>& bias,
                     const char* attr, const char* algorithm) {
  c10::List<std::optional<c10::Scalar>> scalars;
  torch::jit::Stack stack{
      c10::IValue(x),
      c10::IValue(packed),
      bias.has_value() ? c10::IValue(*bias) : c10::IValue(),
      c10::IValue(std::string(attr)),
      c10::IValue(scalars),
      c10::IValue(std::string(algorithm)),
  };
  op("mkldnn::_linear_pointwise").callBoxed(&stack);
  return stack.at(0).toTensor();
}

struct TrainLinear : public torch::autograd::Function<TrainLinear> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b) {
    ctx->save_for_backward({x, w});
    return pointwise(x, pack(w), b, "none", "");
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    const int64_t in = w.size(1), out = w.size(0);
    at::Tensor g = grads[0].contiguous();
    at::Tensor g2 = g.reshape({-1, out});
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) gx = pointwise(g, pack(w.t().contiguous()), std::nullopt, "none", "");
    if (ctx->needs_input_grad(1)) gw = g2.t().mm(x.reshape({-1, in}));
    if (ctx->needs_input_grad(2)) gb = g2.sum(0);
    return {gx, gw, gb};
  }
};

}  // namespace

extern "C" {

// 1 when this libtorch has both operators (built with oneDNN), else 0.
int hpcml_onednn_linear_available() {
  return hpcml::has_ops({"mkldnn::_reorder_linear_weight", "mkldnn::_linear_pointwise"});
}

// `weight` [out, in] (fp32 or bf16, CPU) packed in oneDNN's layout for any
// number of rows; a new tensor in `*out`. 0 on success.
int hpcml_onednn_pack_linear_weight(const at::Tensor* weight, at::Tensor** out, char* err, size_t err_len) {
  return hpcml::new_tensor(out, err, err_len, [&] { return pack(*weight); });
}

// `x W^T + b` over the last dimension of `x`, with `packed` from
// hpcml_onednn_pack_linear_weight; `bias` may be null. `attr` is a fused
// activation ("none", "gelu", "relu") and `algorithm` its variant ("none" or
// "tanh" for gelu, else ""). No autograd. A new tensor in `*out`. 0 on success.
int hpcml_onednn_linear(const at::Tensor* x, const at::Tensor* packed, const at::Tensor* bias, const char* attr,
                        const char* algorithm, at::Tensor** out, char* err, size_t err_len) {
  return hpcml::new_tensor(out, err, err_len, [&] {
    std::optional<at::Tensor> b = bias == nullptr ? std::nullopt : std::optional<at::Tensor>(*bias);
    return pointwise(*x, *packed, b, attr, algorithm);
  });
}

// `x W^T + b` with autograd (fp32 weight `[out, in]` and bias `[out]` on the
// CPU), the weight packed anew at each call. A new tensor in `*out`. 0 on success.
int hpcml_onednn_linear_train(const at::Tensor* x, const at::Tensor* weight, const at::Tensor* bias, at::Tensor** out,
                              char* err, size_t err_len) {
  return hpcml::new_tensor(out, err, err_len, [&] { return TrainLinear::apply(*x, *weight, *bias); });
}

}  // extern "C"
