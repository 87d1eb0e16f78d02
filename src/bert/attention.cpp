// Attention for fp32 inference on x86 CPUs: softmax(q k^T / sqrt(d) + mask) v
// for each (example, head) in one pass over a block of scores that stays in
// the core's cache, written straight into the `[batch, len, heads * head_dim]`
// layout the output projection reads.
//
// libtorch's fused kernel (scaled_dot_product_attention on the CPU) tiles
// BERT's short sequences into many small products, each a separate MKL call
// that packs its operands again, and returns `[batch, heads, len, head_dim]`,
// which costs a copy to transpose. Here each (example, head, block of up to
// kRows queries) is two MKL products (sgemm_, which libtorch exports) with the
// softmax between them, each product on one thread (MKL would otherwise start
// a team of its own inside libtorch's at every call): 1.3-1.7x the fused
// kernel's rate, layout copy included, for 16 texts of 128 tokens and 32-wide
// heads (MiniLM) on a Zen 3 (benches/attention.rs).
//
// The softmax's exponential is a Cephes-style polynomial in AVX2 (about 1 ulp,
// as libtorch's own vectorised exp); keys the mask removes (-inf) get exactly
// zero weight. Every entry point catches C++ exceptions and reports them in
// `err`.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <vector>

#include "../shim.h"

#if defined(__x86_64__)
#include <dlfcn.h>
#include <immintrin.h>
#endif

namespace {

// Queries per block: a block's scores (kRows x keys floats) stay in L2.
constexpr int64_t kRows = 128;

#if defined(__x86_64__)

using Sgemm = void (*)(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                       const int*, const float*, const int*, const float*, float*, const int*);

// The BLAS that libtorch carries (MKL on x86 wheels), or null.
Sgemm sgemm() {
  static Sgemm f = reinterpret_cast<Sgemm>(dlsym(RTLD_DEFAULT, "sgemm_"));
  return f;
}

// MKL's per-thread thread count (its C entry point, MKL_Set_Num_Threads_Local;
// the lower-case name is the Fortran one, which takes a pointer), or null where
// the BLAS is not MKL.
using SetLocalThreads = int (*)(int);
SetLocalThreads set_local_threads() {
  static SetLocalThreads f = reinterpret_cast<SetLocalThreads>(dlsym(RTLD_DEFAULT, "MKL_Set_Num_Threads_Local"));
  return f;
}

// exp(x) for 8 floats; 0 below -87.3 (and for -inf), where float's exp
// leaves the normal range.
__attribute__((target("avx2,fma"))) inline __m256 exp8(__m256 x) {
  const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_GE_OQ);
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  // x - n ln2, with ln2 in two parts so that the subtraction is exact.
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(two_n)), keep);
}

__attribute__((target("avx2,fma"))) inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// Row `r` (`width` floats, a multiple of 8, -inf past `keys`) plus `bias`
// (null: none; `keys` floats) becomes exp(r + bias - max); returns 1 / the
// row's sum, or 0 where every key is masked.
__attribute__((target("avx2,fma"))) float softmax_row(float* r, const float* bias, int64_t keys, int64_t width) {
  __m256 mx = _mm256_set1_ps(-INFINITY);
  for (int64_t j = 0; j < width; j += 8) {
    __m256 x = _mm256_loadu_ps(r + j);
    if (bias != nullptr) {
      if (j + 8 <= keys) {
        x = _mm256_add_ps(x, _mm256_loadu_ps(bias + j));
      } else {
        // The bias ends at `keys`: the last chunk reads only that far.
        const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(keys - j)),
                                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        x = _mm256_add_ps(x, _mm256_maskload_ps(bias + j, lanes));
      }
    }
    _mm256_storeu_ps(r + j, x);
    mx = _mm256_max_ps(mx, x);
  }
  const float m = hmax(mx);
  if (m == -INFINITY) {
    std::fill(r, r + width, 0.0f);
    return 0.0f;
  }
  const __m256 vm = _mm256_set1_ps(m);
  __m256 sum = _mm256_setzero_ps();
  for (int64_t j = 0; j < width; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(r + j), vm));
    sum = _mm256_add_ps(sum, e);
    _mm256_storeu_ps(r + j, e);
  }
  return 1.0f / hsum(sum);
}

struct Shapes {
  int64_t batch, heads, queries, keys, dim;
  // A row of scores: `keys` rounded up to whole 8-float vectors.
  int64_t width;
  // Element strides of example and head in q, k, v; and of a row (token).
  int64_t q_b, q_h, q_r, k_b, k_h, k_r, v_b, v_h, v_r;
};

// One block: queries [row0, row0 + rows) of head h of example b.
__attribute__((target("avx2,fma"))) void block(const Shapes& s, const float* q, const float* k, const float* v,
                                               const float* bias, float* out, float* scores, float* inv,
                                               int64_t b, int64_t h, int64_t row0, int64_t rows) {
  const int64_t width = s.width;
  const float* qb = q + b * s.q_b + h * s.q_h + row0 * s.q_r;
  const float* kb = k + b * s.k_b + h * s.k_h;
  const float* vb = v + b * s.v_b + h * s.v_h;
  float* ob = out + (b * s.queries + row0) * s.heads * s.dim + h * s.dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.dim));
  const float zero = 0.0f, one = 1.0f;
  const char t = 'T', n = 'N';
  // BLAS is column-major: the scores, row-major [rows, width], are the
  // column-major [width, rows] product k q^T.
  {
    const int m = static_cast<int>(s.keys), cols = static_cast<int>(rows), depth = static_cast<int>(s.dim);
    const int ldk = static_cast<int>(s.k_r), ldq = static_cast<int>(s.q_r), lds = static_cast<int>(width);
    sgemm()(&t, &n, &m, &cols, &depth, &scale, kb, &ldk, qb, &ldq, &zero, scores, &lds);
  }
  const float* row_bias = bias == nullptr ? nullptr : bias + b * s.keys;
  for (int64_t i = 0; i < rows; ++i) {
    float* r = scores + i * width;
    std::fill(r + s.keys, r + width, -INFINITY);
    inv[i] = softmax_row(r, row_bias, s.keys, width);
  }
  // The output rows, column-major [dim, rows] with the output's row stride,
  // are v^T p^T; then each row is divided by its sum.
  {
    const int m = static_cast<int>(s.dim), cols = static_cast<int>(rows), depth = static_cast<int>(s.keys);
    const int ldv = static_cast<int>(s.v_r), lds = static_cast<int>(width);
    const int ldo = static_cast<int>(s.heads * s.dim);
    sgemm()(&n, &n, &m, &cols, &depth, &one, vb, &ldv, scores, &lds, &zero, ob, &ldo);
  }
  for (int64_t i = 0; i < rows; ++i) {
    float* o = ob + i * s.heads * s.dim;
    for (int64_t d = 0; d < s.dim; ++d) o[d] *= inv[i];
  }
}

at::Tensor attend(const at::Tensor& q0, const at::Tensor& k0, const at::Tensor& v0, const at::Tensor* key_bias) {
  auto last_dim_dense = [](const at::Tensor& x) {
    TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
                "attention takes fp32 [batch, heads, len, head_dim] tensors on the CPU");
    return x.stride(3) == 1 ? x : x.contiguous();
  };
  const at::Tensor q = last_dim_dense(q0), k = last_dim_dense(k0), v = last_dim_dense(v0);
  Shapes s{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3), (k.size(2) + 7) / 8 * 8,
           q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
           v.stride(0), v.stride(1), v.stride(2)};
  TORCH_CHECK(k.sizes() == v.sizes() && k.size(0) == s.batch && k.size(1) == s.heads && k.size(3) == s.dim,
              "attention: q, k and v disagree in shape");
  for (int64_t x : {s.q_r, s.k_r, s.v_r, s.keys, s.heads * s.dim, s.keys + 8}) {
    TORCH_CHECK(x <= INT_MAX, "attention: a dimension or stride is past BLAS's 32-bit range");
  }
  at::Tensor bias;
  if (key_bias != nullptr) {
    TORCH_CHECK(key_bias->numel() == s.batch * s.keys && key_bias->scalar_type() == at::kFloat,
                "attention: the mask must hold one fp32 value per example and key");
    bias = key_bias->reshape({s.batch, s.keys}).contiguous();
  }
  at::Tensor out = at::empty({s.batch, s.queries, s.heads * s.dim}, q.options());
  const int64_t blocks_per_head = (s.queries + kRows - 1) / kRows;
  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float* bp = key_bias != nullptr ? bias.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  at::parallel_for(0, s.batch * s.heads * blocks_per_head, 1, [&](int64_t begin, int64_t end) {
    // Each block's products are small: one thread each, or MKL would start
    // a team of its own inside this one at every call.
    const int before = set_local_threads() != nullptr ? set_local_threads()(1) : 0;
    std::vector<float> scores(std::min(kRows, s.queries) * s.width), inv(kRows);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t bh = u / blocks_per_head, row0 = (u % blocks_per_head) * kRows;
      block(s, qp, kp, vp, bp, op, scores.data(), inv.data(), bh / s.heads, bh % s.heads, row0,
            std::min(kRows, s.queries - row0));
    }
    if (set_local_threads() != nullptr) set_local_threads()(before);
  });
  return out;
}

#endif  // __x86_64__

}  // namespace

extern "C" {

// 1 where this kernel runs: an x86 CPU with AVX2 and FMA, and a libtorch
// that exports BLAS's sgemm_; else 0.
int hpcml_attention_available() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && sgemm() != nullptr ? 1 : 0;
#else
  return 0;
#endif
}

// softmax(q k^T / sqrt(head_dim) + key_bias) v for q `[batch, heads,
// queries, head_dim]`, k and v `[batch, heads, keys, head_dim]` (any strides
// but the last), key_bias (null: none) one value per example and key (0, or
// -inf to mask); a new `[batch, queries, heads * head_dim]` tensor in `*out`.
// Without autograd: inference only. 0 on success.
int hpcml_attention(const at::Tensor* q, const at::Tensor* k, const at::Tensor* v, const at::Tensor* key_bias,
                    at::Tensor** out, char* err, size_t err_len) {
  return hpcml::new_tensor(out, err, err_len, [&] {
#if defined(__x86_64__)
    TORCH_CHECK(hpcml_attention_available() == 1, "attention: needs AVX2, FMA and libtorch's sgemm_");
    return attend(*q, *k, *v, key_bias);
#else
    TORCH_CHECK(false, "attention: this kernel runs on x86 CPUs only");
    return at::Tensor();
#endif
  });
}

}  // extern "C"
