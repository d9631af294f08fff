// Fused CPU kernels for the implicit-gradient quadratures of stochgrad/special/{gamma,beta}.py.
//
// Each kernel is the same arithmetic as the pure-torch path, operation for operation (the Sleef
// vector functions ATen uses, no FMA contraction), applied to a few SIMD lanes at a time in one
// at::parallel_for: one pass over memory and one thread barrier per call instead of several
// hundred torch ops, each ending in a barrier (which is what collapses under a loaded machine).
// Differences from the torch path: the quadrature tier is chosen per group of lanes instead of
// per block of 2^17 elements (same rules, finer choice); exp and expm1 in the node loops and the
// Newton steps are this file's inline versions (fast_exp/fast_expm1, within 2-3 ulps of Sleef's,
// 2-4x cheaper); the Gamma kernel takes log x only where it needs it. Everything agrees to a few
// ulps (tests/special/test_native_kernels.py).
//
// Registered as torch.ops.stochgrad_special.{gamma_log_grad,beta_grad} (and exp_expm1 and
// log1p_nonnegative, for the tests); built on first use by torch.utils.cpp_extension.load (see _native.py) or ahead of time
// by `python -m stochgrad.special.build`.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/native/Math.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using at::vec::Vectorized;

template <typename T>
struct Rule {
  std::vector<T> nodes;         // Gauss-Legendre nodes on [0, 1]
  std::vector<T> weights;       // weights
  std::vector<T> node_weights;  // weight * node, rounded once (as Python does)
  T cutoff;
};

template <typename T>
Rule<T> make_rule(const at::Tensor& nodes, const at::Tensor& weights, double cutoff) {
  auto n = nodes.contiguous().to(at::kDouble);
  auto w = weights.contiguous().to(at::kDouble);
  const double* np = n.data_ptr<double>();
  const double* wp = w.data_ptr<double>();
  Rule<T> rule;
  for (int64_t i = 0; i < n.numel(); ++i) {
    rule.nodes.push_back(static_cast<T>(np[i]));
    rule.weights.push_back(static_cast<T>(wp[i]));
    rule.node_weights.push_back(static_cast<T>(wp[i] * np[i]));
  }
  rule.cutoff = static_cast<T>(cutoff);
  return rule;
}

// Smallest value over lanes, NaN counting as 0 (so a NaN selects the rules for all values, as
// the torch path does).
template <typename T>
double smallest(const T* values, int64_t count) {
  double out = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < count; ++i) {
    double v = static_cast<double>(values[i]);
    out = std::min(out, v == v ? v : 0.0);
  }
  return out;
}

// The tier serving a group whose smallest concentration is `small`: the last whose lowest
// concentration it reaches (as _quadrature.tier_rule on the torch path).
template <typename T>
const Rule<T>& tier_rule(const std::vector<Rule<T>>& rules, const std::vector<double>& lows,
                         double small) {
  size_t tier = 0;
  for (size_t i = 0; i < lows.size(); ++i) {
    if (small >= lows[i]) tier = i;
  }
  return rules[tier];
}

// ψ with a small memo: parameters are usually broadcast, so neighbouring elements share them
// (Beta asks for ψ(a), ψ(b) and ψ(a+b) in turn, hence four entries).
struct Digamma {
  double in[4] = {NAN, NAN, NAN, NAN};
  double out[4] = {NAN, NAN, NAN, NAN};
  int next = 0;
  double operator()(double x) {
    for (int i = 0; i < 4; ++i) {
      if (in[i] == x) return out[i];
    }
    in[next] = x;
    out[next] = calc_digamma(x);
    double value = out[next];
    next = (next + 1) % 4;
    return value;
  }
};

template <typename V>
V select(const V& mask, const V& if_true, const V& if_false) {
  return V::blendv(if_false, if_true, mask);
}

// ---------------------------------------------------------------------------------------------
// exp and expm1 for the node loops, inline. Sleef's vector expm1 works in double-double and costs
// 3-5x its exp, and both are out-of-line calls that serialize the loop; these cost about one exp
// each and interleave across nodes. Same range reduction for both (Cody-Waite,
// y = k ln 2 + r with |r| <= ln(2)/2), and the Taylor series of expm1(r) to r^13 (double) or r^8
// (float), whose truncation is below 1e-17 (1e-10) relative; then exp(y) = 2^k (1 + p) and
// expm1(y) = 2^k p + (2^k - 1), one rounding each: within 1-2 ulps of Sleef (the torch path).
// Limits: arguments above ~709.4 (88.4 in float) give inf (as do those above 709.78), exp
// arguments below -708 (-87) give exp(-708) ~ 3e-308 (1.6e-38) instead of a smaller number or
// 0 (negligible beside the node sums, whose first term is ~1); NaN gives NaN.

template <typename T>
struct ExpRange;
template <>
struct ExpRange<double> {
  using Int = int64_t;
  static constexpr double log2e = 1.4426950408889634, ln2_hi = 6.93147180369123816490e-01,
                          ln2_lo = 1.90821492927058770002e-10;
  static constexpr double low_exp = -708.0, low_expm1 = -60.0, high = 710.0;
  static constexpr bool clamp_low = true, clamp_high = true;
  static constexpr int degree = 13, bias = 1023, mantissa = 52;
  static constexpr double inverse_factorial[] = {
      1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
      1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0};
};
template <>
struct ExpRange<float> {
  using Int = int32_t;
  static constexpr float log2e = 1.44269504f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  static constexpr float low_exp = -87.0f, low_expm1 = -25.0f, high = 89.0f;
  static constexpr bool clamp_low = true, clamp_high = true;
  static constexpr int degree = 8, bias = 127, mantissa = 23;
  static constexpr float inverse_factorial[] = {
      1.0f, 1.0f, 1.0f / 2, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040, 1.0f / 40320};
};

// (2^k, expm1(r)) for y = k ln 2 + r, y clamped to [low, high]; with parts, also r and
// expm1(r) - r = r^2 q(r) (before the rounding of r + r^2 q). R: the constants and q's
// coefficients (R::inverse_factorial[j] multiplies r^j; ExpRange's Taylor series by default),
// and which clamps a caller whose arguments cannot leave the range may skip.
template <typename T, typename R = ExpRange<T>>
__attribute__((always_inline)) inline std::pair<Vectorized<T>, Vectorized<T>> exp_reduce(
    const Vectorized<T>& y, T low, std::pair<Vectorized<T>, Vectorized<T>>* parts = nullptr) {
  using V = Vectorized<T>;
  using I = Vectorized<typename R::Int>;
  V yc = y;  // clamp_min then clamp_max rounds as clamp
  if constexpr (R::clamp_low) yc = at::vec::clamp_min(yc, V(low));
  if constexpr (R::clamp_high) yc = at::vec::clamp_max(yc, V(T(R::high)));
  V k = (yc * V(T(R::log2e))).round();
  V r = at::vec::fmadd(k, V(T(-R::ln2_hi)), yc);
  r = at::vec::fmadd(k, V(T(-R::ln2_lo)), r);
  // Horner: p = r + r^2 (1/2! + r (1/3! + ...)).
  V q(R::inverse_factorial[R::degree]);
  for (int j = R::degree - 1; j >= 2; --j) q = at::vec::fmadd(q, r, V(R::inverse_factorial[j]));
  V r2 = r * r;
  V p = at::vec::fmadd(q, r2, r);
  if (parts != nullptr) *parts = {r, q * r2};
  I bits = at::vec::convert_to_int_of_same_size<T>(k) + I(typename R::Int(R::bias));
  V scale = at::vec::cast<T>(bits << I(typename R::Int(R::mantissa)));
  return {scale, p};
}

template <typename T, typename R = ExpRange<T>>
__attribute__((always_inline)) inline Vectorized<T> fast_exp(const Vectorized<T>& y) {
  auto [scale, p] = exp_reduce<T, R>(y, T(ExpRange<T>::low_exp));
  return at::vec::fmadd(scale, p, scale);
}

template <typename T>
__attribute__((always_inline)) inline Vectorized<T> fast_expm1(const Vectorized<T>& y) {
  auto [scale, p] = exp_reduce<T>(y, T(ExpRange<T>::low_expm1));
  return at::vec::fmadd(scale, p, scale - Vectorized<T>(T(1)));
}

// e^y - 1 - y without cancellation (elementary.expm1_excess) as 2^k r^2 q(r) + ((2^k r +
// 2^k - 1) - y): where the reduction leaves k = 0 (|y| < ln(2)/2) r = y and the bracket is
// exactly 0; elsewhere the bracket loses at most ~2.5 bits, as expm1(y) - y.
template <typename T, typename R = ExpRange<T>>
__attribute__((always_inline)) inline Vectorized<T> fast_expm1_excess(const Vectorized<T>& y) {
  using V = Vectorized<T>;
  std::pair<V, V> parts;
  V scale = exp_reduce<T, R>(y, T(ExpRange<T>::low_expm1), &parts).first;
  auto [r, series] = parts;
  return at::vec::fmadd(scale, series, at::vec::fmadd(scale, r, scale - V(T(1))) - y);
}

// fdlibm's reduction for log1p: v = 1 + u = 2^k m with m in [√½, √2); returns (k, f = m - 1).
__attribute__((always_inline)) inline std::pair<Vectorized<double>, Vectorized<double>>
log1p_reduce(const Vectorized<double>& v) {
  using V = Vectorized<double>;
  using I = Vectorized<int64_t>;
  I bits = at::vec::cast<int64_t>(v);
  I hu = (bits >> I(32)) + I(0x3ff00000 - 0x3fe6a09e);
  V dk = at::vec::convert_to_fp_of_same_size<double>((hu >> I(20)) - I(0x3ff));
  I reduced = (((hu & I(0x000fffff)) + I(0x3fe6a09e)) << I(32)) | (bits & I(0xffffffffLL));
  return {dk, at::vec::cast<double>(reduced) - V(1.0)};
}

// log1p(u) for u >= -0.5 in double (named for its first use, u >= 0 in the Beta node loop; the
// Gamma kernel's log(x/a) = log1p((x - a)/a) takes it on [-0.5, 0] too, tested), inline:
// fdlibm's algorithm (v = 1 + u = 2^k m with m in [√½, √2), log m = 2 atanh(f / (2 + f)) by
// its minimax polynomial, plus the rounding correction of 1 + u), within ~1 ulp. Sleef's vector
// log1p works in double-double and was the largest cost of a Beta node (8.3 -> 7.1 ns a node).
// NaN gives NaN, inf gives inf; without special_values, for finite u only (the Beta node loop,
// whose u is finite unless its inputs are NaN, which make the node's term NaN anyway), NaN gives
// an unspecified value and inf a wrong one.
template <bool special_values = true>
__attribute__((always_inline)) inline Vectorized<double> log1p_nonnegative(
    const Vectorized<double>& u) {
  using V = Vectorized<double>;
  const V one(1.0);
  V v = u + one;
  auto [dk, f] = log1p_reduce(v);
  // correction ~ log(1 + u) - log(v); 0 once 1 + u is exact or u dominates (k >= 54)
  V c = select(dk >= V(2.0), one - (v - u), u - (v - one)) / v;
  c = select(dk >= V(54.0), V(0.0), c);
  V hfsq = V(0.5) * f * f;
  V s = f / (V(2.0) + f);
  V z = s * s, w = z * z;
  V t1 = w * at::vec::fmadd(w, at::vec::fmadd(w, V(1.531383769920937332e-01), V(2.222219843214978396e-01)),
                            V(3.999999999940941908e-01));
  V t2 = z * at::vec::fmadd(
                 w,
                 at::vec::fmadd(w, at::vec::fmadd(w, V(1.479819860511658591e-01), V(1.818357216161805012e-01)),
                                V(2.857142874366239149e-01)),
                 V(6.666666666666735130e-01));
  V result = s * (hfsq + (t2 + t1)) + (dk * V(1.90821492927058770002e-10) + c) - hfsq + f +
             dk * V(6.93147180369123816490e-01);
  if constexpr (!special_values) return result;
  // inf and NaN are returned as they are (their reduction is meaningless)
  return select((u == V(std::numeric_limits<double>::infinity())) | (u != u), u, result);
}

// log1p of values >= 0 in either precision: the inline one in double, Sleef's in float.
template <typename L, bool special_values = true>
__attribute__((always_inline)) inline Vectorized<L> nonnegative_log1p(const Vectorized<L>& u) {
  if constexpr (std::is_same_v<L, double>) {
    return log1p_nonnegative<special_values>(u);
  } else {
    return u.log1p();
  }
}

// ---------------------------------------------------------------------------------------------
// Gamma: d log x / da (see special/gamma.py for the math; names follow _log_grad_block).
//
// Where the time went (float64, AVX-512, 8 lanes a group, one shared core): ~2 ns an element a
// node in the node loop (two exponentials a node) and ~23 ns an element of set-up (ten divisions,
// two square roots, Sleef's double-double log1p, two range reductions in the Newton step, ψ or the
// Stirling series per group, an out-of-line copysign). Now: one square root and one division
// serve both tails' bounds; what depends on a alone is kept while a repeats (GammaMemo); the
// Newton step shares one range reduction and, like the upper tail's log1p bound, computes only
// to ~1e-9 (it places the panel's end, to which the result is insensitive: see GammaNewton); the
// node loop forms e^u - 1 - u without range reduction where |u| <= 1 (small_expm1_excess) and
// uses minimax polynomials after range reduction (GammaExp, GammaExcess), without the clamps its
// arguments cannot reach (|u| <= panel <= C, exponents <= 0: the same bits). Differences from the
// torch path beyond those of the file's header: these polynomials and series, all within an ulp
// or two of its terms, and the Newton step's start and exponentials, which move the panel's end
// by ~1e-9 relative and the result by far less than an ulp. Fewer nodes do not pay at large a:
// near the mode the integrand is ~exp(-C t^2) on t in [0, 1] whatever a is, so the
// Gauss-Legendre error at n nodes does not fall as a grows (against a 96-node rule over a in
// [30, 1e20]: 20 nodes 1.2e-12, 18 nodes 1.1e-10, 16 nodes 7.7e-10; with C = 30, 18 nodes
// 1.6e-11; with C = 28, 16 nodes 1e-10 at a >= 100).

constexpr double kStirling[] = {1.0 / 12,  -1.0 / 120,      1.0 / 252, -1.0 / 240,
                                1.0 / 132, -691.0 / 32760, 1.0 / 12};

double log_minus_digamma(double a) {  // as _log_minus_digamma, a >= 10
  const double inv = 1 / a, inv2 = inv * inv;
  double series = kStirling[6];
  for (int k = 5; k >= 0; --k) series = series * inv2 + kStirling[k];
  return series * inv2 + 0.5 * inv;
}

// e^u - 1 - u for |u| <= 1 without range reduction: u^2 (1/2! + u/3! + ... + u^(D-2)/D!), whose
// truncation is below 2/(D+1)! relative (1.6e-17 for D = 18 in double, 4.2e-9 for D = 11 in
// float, both well under half an ulp); 19 (12) operations instead of fast_expm1_excess's ~27
// (~18). The node loop's arguments are t·(±panel) with t in [0, 1]: the nodes with t·panel <= 1
// in every lane use it (all of them at a >= ~70 next to the mode, where panel ~ √(2C/x), and at
// a >= 500; about a third of them at a = 5). In double, a larger x allows a shorter series: an
// exponent error x g(u) δ (δ the relative truncation) moves the node's term e^(-x g) by
// x g e^(-x g) δ, whose maximum over |u| <= 1, relative to the node sum (>= 0.1 of its largest
// term), is below 3e-17 for D = 13 where every x >= 100 and for D = 10 where every x >= 1000.
template <typename T>
struct SmallExcess;
template <>
struct SmallExcess<double> {
  static constexpr int degree = 18, degree_from_100 = 13, degree_from_1000 = 10;
};
template <>
struct SmallExcess<float> {
  static constexpr int degree = 11, degree_from_100 = 11, degree_from_1000 = 11;
};

constexpr double inverse_factorial(int k) {
  double product = 1;  // exact up to 18!
  for (int i = 2; i <= k; ++i) product *= i;
  return 1 / product;
}

template <typename T, int D>
__attribute__((always_inline)) inline Vectorized<T> small_expm1_excess(const Vectorized<T>& u) {
  using V = Vectorized<T>;
  V q(static_cast<T>(inverse_factorial(D)));
  for (int j = D - 1; j >= 2; --j) {
    q = at::vec::fmadd(q, u, V(static_cast<T>(inverse_factorial(j))));
  }
  return q * (u * u);
}

// Minimax q(r) ~ (e^r - 1 - r)/r^2 on |r| <= ln(2)/2 (mpmath.chebyfit at 50 digits) for the
// Gamma kernel in double, in place of ExpRange's Taylor series to r^13: degree 9 for e^y (q's
// relative error 2.3e-16 moves e^r by at most r^2/e^r <= 0.06 of that, 1.4e-17) and degree 10
// for e^u - 1 - u (4.9e-18 relative to it). Two and one FMAs fewer: ~8% of a node.
struct GammaExp : ExpRange<double> {
  static constexpr int degree = 11;
  static constexpr bool clamp_high = false;  // the node loop's exponents are <= 0
  static constexpr double inverse_factorial[] = {
      1.0, 1.0, 0.5000000000000001, 0.16666666666666669, 0.041666666666624164,
      0.008333333333330065, 0.0013888888917196719, 0.00019841269863040545, 2.4801521322368692e-05,
      2.7557268480310024e-06, 2.7620075879983367e-07, 2.5100375832561234e-08};
};
struct GammaExcess : ExpRange<double> {
  static constexpr int degree = 12;
  static constexpr bool clamp_low = false, clamp_high = false;  // |u| <= panel <= C
  static constexpr double inverse_factorial[] = {
      1.0, 1.0, 0.5, 0.1666666666666667, 0.04166666666666667, 0.008333333333326141,
      0.0013888888888883752, 0.00019841269874800493, 2.4801587325533363e-05,
      2.7557255425746435e-06, 2.7557273661348637e-07, 2.510520637395701e-08,
      2.0914679376583935e-09};
};
// The Newton step only places the end of the panel: moving it by a relative 1e-8 moves the
// integral by the integrand there (e^-C) and the rule's error (<= 1e-11) by a like fraction, far
// below an ulp of the result. Its exponentials take ExpRange's Taylor series to r^8 (truncation
// 3.4e-9 relative to e^r - 1 - r), five FMAs fewer.
struct GammaNewton : ExpRange<double> {
  static constexpr int degree = 8;
};
template <typename T>
struct GammaExpShort : ExpRange<T> {  // float keeps ExpRange<float>'s (already short) series
  static constexpr bool clamp_high = false;
};
template <typename T>
struct GammaExcessShort : ExpRange<T> {
  static constexpr bool clamp_low = false, clamp_high = false;
};
template <typename T>
struct GammaPolynomials {
  using Exp = GammaExpShort<T>;
  using Excess = GammaExcessShort<T>;
  using Newton = ExpRange<T>;
};
template <>
struct GammaPolynomials<double> {
  using Exp = GammaExp;
  using Excess = GammaExcess;
  using Newton = GammaNewton;
};

// (expm1(y), e^y - 1 - y) from one range reduction: fast_expm1 and fast_expm1_excess, bit for bit.
template <typename T, typename R = ExpRange<T>>
__attribute__((always_inline)) inline std::pair<Vectorized<T>, Vectorized<T>>
fast_expm1_with_excess(const Vectorized<T>& y) {
  using V = Vectorized<T>;
  std::pair<V, V> parts;
  auto [scale, p] = exp_reduce<T, R>(y, T(ExpRange<T>::low_expm1), &parts);
  auto [r, series] = parts;
  const V scale_minus_one = scale - V(T(1));
  return {at::vec::fmadd(scale, p, scale_minus_one),
          at::vec::fmadd(scale, series, at::vec::fmadd(scale, r, scale_minus_one) - y)};
}

// log1p(v) for v >= 0 to ~1e-10 relative, for the upper tail's bound log1p((C + a R)/x) that only
// starts the Newton step (see GammaNewton): log1p_nonnegative's reduction (1 + v = 2^k m, m in
// [√½, √2)) without its rounding correction, and 2 atanh(f/(2 + f)) to s^11 (|s| <= 0.172:
// truncation below 3e-11). One division and ~20 operations instead of two and ~40. In float the
// Sleef one, as before.
template <typename T>
__attribute__((always_inline)) inline Vectorized<T> log1p_rough(const Vectorized<T>& v) {
  if constexpr (std::is_same_v<T, double>) {
    using V = Vectorized<double>;
    auto [dk, f] = log1p_reduce(v + V(1.0));
    V s = f / (V(2.0) + f);
    V z = s * s;
    V series = at::vec::fmadd(z, V(2.0 / 11), V(2.0 / 9));
    series = at::vec::fmadd(series, z, V(2.0 / 7));
    series = at::vec::fmadd(series, z, V(2.0 / 5));
    series = at::vec::fmadd(series, z, V(2.0 / 3));
    series = at::vec::fmadd(series, z, V(2.0));
    V result = at::vec::fmadd(dk, V(0.6931471805599453), s * series);
    return select((v == V(std::numeric_limits<double>::infinity())) | (v != v), v, result);
  } else {
    return v.log1p();
  }
}

// What depends on a alone, kept for the next group when all lanes of a group hold the same a
// (parameters are usually broadcast): log a - ψ(a) by its series as the vector code rounds it
// (a >= 10); ψ(a) for a < 10 comes from the Digamma memo.
template <typename T>
struct GammaMemo {
  T a = std::numeric_limits<T>::quiet_NaN();
  Vectorized<T> log_minus_digamma;
};

template <typename T>
__attribute__((always_inline)) inline Vectorized<T> log_minus_digamma_series(
    const Vectorized<T>& a) {
  using V = Vectorized<T>;
  V inv = a.reciprocal();
  V inv2 = inv * inv;
  V series = V(static_cast<T>(kStirling[6]));
  for (int k = 5; k >= 0; --k) series = series * inv2 + V(T(kStirling[k]));
  return at::vec::fmadd(inv, V(T(0.5)), series * inv2);
}

template <typename T>
void gamma_lanes(const T* a_in, const T* input, T* out, const std::vector<double>& lows,
                 const std::vector<Rule<T>>& rules, Digamma& digamma, GammaMemo<T>& memo,
                 bool from_sample) {
  using V = Vectorized<T>;
  using P = GammaPolynomials<T>;
  constexpr int W = V::size();
  // input: log x, or x itself when from_sample (then the result is dx/da = x d log x/da, and 0
  // where x = 0, as standard_gamma_grad).
  V a = V::loadu(a_in);
  const bool uniform = (a == V(a_in[0])).zero_mask() == 0;  // every lane the same a (not NaN)
  const double small = uniform ? static_cast<double>(a_in[0]) : smallest(a_in, W);
  const Rule<T>& rule = tier_rule(rules, lows, small);
  const T cutoff = rule.cutoff;
  const V one(T(1)), zero(T(0)), tiny(std::numeric_limits<T>::min()), C(cutoff);
  // From a sample, x is the input itself and log x is only taken where it is needed (a < 10, or
  // x far from a); a negative sample gives NaN, as its logarithm does on the torch path.
  V x = from_sample ? V::loadu(input) : V::loadu(input).exp();
  V log_x;
  bool have_log = false;
  auto logarithm = [&]() {
    if (!have_log) log_x = from_sample ? x.log() : V::loadu(input);
    have_log = true;
    return log_x;
  };
  V diff = x - a;
  V sign = (diff & V(T(-0.0))) | one;  // copysign(1, diff) (Sleef's is an out-of-line call)
  V lower = (one - sign) * V(T(0.5));
  V is_lower = lower > V(T(0.5));
  V slope = diff.abs();
  V x_safe = at::vec::clamp_min(x, tiny);
  // Each lane needs one of the two roots, 2C / (slope + √(slope^2 + k C x)) with k = 4/3 (lower
  // tail) or 2 (upper): one square root and one division for both; Sleef's hypot only where
  // slope^2 + k C x overflows. Likewise one division for C/slope (lower) and (C + a R)/x (upper).
  V kx = select(is_lower, V(T((4.0 / 3.0) * double(cutoff))) * x, V(T(2 * double(cutoff))) * x);
  V h = at::vec::fmadd(slope, slope, kx).sqrt();
  const V inf(std::numeric_limits<T>::infinity());
  if ((h == inf).zero_mask() != (1 << W) - 1) h = slope.hypot(kx.sqrt());  // a lane overflowed
  V root = V(T(2 * double(cutoff))) / (slope + h);
  V quotient = select(is_lower, C, C + a * root) /
               select(is_lower, at::vec::clamp_min(slope, tiny), x_safe);
  V s_lower = at::vec::minimum(quotient, (C + x) / a);
  s_lower = at::vec::minimum(s_lower, root + at::vec::clamp_min(root - one, zero) * V(T(1e30)));
  V s_upper = at::vec::minimum(root, log1p_rough<T>(quotient));
  V end = select(is_lower, s_lower, s_upper);
  V minus_x = x.neg();
  {  // one Newton step (_NEWTON_STEPS); φ(s) = -slope s - x g(sign s), g(u) = e^u - 1 - u
    V signed_end = sign * end;
    auto [expm1_end, excess_end] = fast_expm1_with_excess<T, typename P::Newton>(signed_end);
    V phi = at::vec::fmadd(minus_x, excess_end, slope.neg() * end);
    V dphi = (slope + x * (sign * expm1_end)).neg();
    end = end - (phi + C) / dphi;
  }
  V panel = at::vec::clamp_max(end, C);
  V signed_panel = sign * panel;
  V minus_slope_panel = slope.neg() * panel;
  V moment0 = zero, moment1 = zero;
  const size_t n = rule.nodes.size();
  // Nodes t with t·max|panel| <= 1 (a prefix: the nodes ascend) take g without range reduction.
  T panels[W];
  panel.abs().store(panels);
  T widest = 0;
  // (std::max(widest, NaN) keeps widest: a NaN lane is ignored, its result is NaN anyway.)
  for (int k = 0; k < W; ++k) widest = std::max(widest, panels[k]);
  size_t reduced_from = 0;
  while (reduced_from < n && rule.nodes[reduced_from] * widest <= T(1)) ++reduced_from;
  // (fmadd(term, w, 0) rounds as term * w: the first node needs no case of its own, and the loop
  // body is branch-free.)
  auto node_sums = [&](size_t from, size_t to, auto excess_of) {
    for (size_t i = from; i < to; ++i) {
      V node(rule.nodes[i]);
      V excess = excess_of(signed_panel * node);
      V exponent = at::vec::fmadd(excess, minus_x, minus_slope_panel * node);
      V term = fast_exp<T, typename P::Exp>(exponent);
      moment0 = at::vec::fmadd(term, V(rule.weights[i]), moment0);
      moment1 = at::vec::fmadd(term, V(rule.node_weights[i]), moment1);
    }
  };
  using S = SmallExcess<T>;
  T x_least = 0;  // (float has one series for all x)
  if constexpr (S::degree_from_100 != S::degree) {
    T xs[W];
    x.store(xs);
    x_least = xs[0];
    for (int k = 1; k < W; ++k) x_least = std::min(x_least, xs[k]);  // (NaN: either way)
  }
  // (lambdas, not function pointers, so that each loop is compiled with its series inline)
  if (x_least >= T(1000)) {
    node_sums(0, reduced_from, [](const V& u) { return small_expm1_excess<T, S::degree_from_1000>(u); });
  } else if (x_least >= T(100)) {
    node_sums(0, reduced_from, [](const V& u) { return small_expm1_excess<T, S::degree_from_100>(u); });
  } else {
    node_sums(0, reduced_from, [](const V& u) { return small_expm1_excess<T, S::degree>(u); });
  }
  node_sums(reduced_from, n, [](const V& u) { return fast_expm1_excess<T, typename P::Excess>(u); });
  moment0 = moment0 * panel;
  moment1 = moment1 * panel * panel;
  V beyond = at::vec::clamp_min(end - C, zero) * lower;
  V cut = beyond > zero;
  if (cut.zero_mask() != (1 << W) - 1) {
    V tail = select(cut, (x - a * C).exp() / a, zero);
    moment0 = moment0 + tail;
    moment1 = moment1 + tail * (C + one / a);
  }
  V centred;
  if (small >= 10) {
    V ratio = diff / a;  // (x - a)/a with x - a exact near the mode, not x/a - 1
    // log1p on [-0.5, 1]: in double the inline one (fdlibm's reduction also covers 1 + u in
    // [0.5, 1), with k = -1; within 1 ulp of mpmath there, tests/special/test_native_kernels.py),
    // 3-4x cheaper than Sleef's double-double one; Sleef's in float.
    V near = nonnegative_log1p<T>(at::vec::clamp(ratio, V(T(-0.5)), one));
    V outside = at::vec::clamp_min(ratio - one, zero) + at::vec::clamp_min(V(T(-0.5)) - ratio, zero);
    V far_lanes = (outside > zero) | (outside != outside);
    centred = near;
    if (far_lanes.zero_mask() != (1 << W) - 1) {
      centred = select(far_lanes, logarithm() - a.log(), near);
    }
    if (uniform) {
      if (!(memo.a == a_in[0])) memo = {a_in[0], log_minus_digamma_series<T>(a)};
      centred = centred + memo.log_minus_digamma;
    } else {
      centred = centred + log_minus_digamma_series<T>(a);
    }
  } else if (std::is_same_v<T, double> && uniform) {  // all lanes a < 10: log x - ψ(a)
    centred = logarithm() - V(static_cast<T>(digamma(a_in[0])));  // (Digamma memoizes ψ)
  } else {
    // In double; lanes with a >= 10 as above (log x - ψ(a), a difference of two numbers ~log a,
    // would lose ε log(a) √a of the result: all of it for float32 at a = 1e15).
    T tmp[W], logs[W], diffs[W];
    logarithm().store(logs);
    diff.store(diffs);
    for (int k = 0; k < W; ++k) {
      const double log_k = logs[k];
      const double a_k = a_in[k];
      if (a_k >= 10) {
        const double ratio = static_cast<double>(diffs[k]) / a_k;
        const double log_ratio = ratio >= -0.5 && ratio <= 1 ? std::log1p(ratio) : log_k - std::log(a_k);
        tmp[k] = static_cast<T>(log_ratio + log_minus_digamma(a_k));
      } else {
        tmp[k] = static_cast<T>(log_k - digamma(a_k));
      }
    }
    centred = V::loadu(tmp);
  }
  V result = at::vec::fmadd(sign * centred, moment0, moment1);
  if (from_sample) {
    result = select(x == zero, zero, x * result);
    result = select(x < zero, V(std::numeric_limits<T>::quiet_NaN()), result);
  }
  result.store(out);
}

at::Tensor gamma_log_grad(const at::Tensor& a, const at::Tensor& log_x, at::ArrayRef<double> lows,
                          at::TensorList nodes, at::TensorList weights,
                          at::ArrayRef<double> cutoffs, bool from_sample) {
  TORCH_CHECK(a.device().is_cpu() && log_x.device().is_cpu(), "gamma_log_grad: CPU tensors only");
  TORCH_CHECK(a.sizes() == log_x.sizes() && a.scalar_type() == log_x.scalar_type(),
              "gamma_log_grad: a and log_x must have the same shape and dtype");
  auto ac = a.contiguous();
  auto lc = log_x.contiguous();
  auto out = at::empty(a.sizes(), a.options());
  const int64_t total = a.numel();
  std::vector<double> lows_v(lows.begin(), lows.end());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "gamma_log_grad", [&] {
    using T = scalar_t;
    constexpr int W = Vectorized<T>::size();
    std::vector<Rule<T>> rules;
    for (size_t i = 0; i < cutoffs.size(); ++i) {
      rules.push_back(make_rule<T>(nodes[i], weights[i], cutoffs[i]));
    }
    const T* ap = ac.data_ptr<T>();
    const T* lp = lc.data_ptr<T>();
    T* op = out.data_ptr<T>();
    const int64_t groups = (total + W - 1) / W;
    at::parallel_for(0, groups, std::max<int64_t>(1, 2048 / W), [&](int64_t begin, int64_t end) {
      Digamma digamma;
      GammaMemo<T> memo;
      for (int64_t g = begin; g < end; ++g) {
        const int64_t start = g * W;
        const int64_t count = std::min<int64_t>(W, total - start);
        if (count == W) {
          gamma_lanes<T>(ap + start, lp + start, op + start, lows_v, rules, digamma, memo,
                         from_sample);
        } else {  // pad the last group with copies of its first element (same rule)
          T pa[W], pl[W], po[W];
          std::fill(pa, pa + W, ap[start]);
          std::fill(pl, pl + W, lp[start]);
          std::copy(ap + start, ap + start + count, pa);
          std::copy(lp + start, lp + start + count, pl);
          gamma_lanes<T>(pa, pl, po, lows_v, rules, digamma, memo, from_sample);
          std::copy(po, po + count, op + start);
        }
      }
    });
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Beta: (dx/da, dx/db) (see special/beta.py; names follow _grad_block, _lower_form,
// _lower_integrals). Set-up and the final combination in double; the node sums in L (float for
// float32 inputs, double for float64), as in the torch path.

// Elements per group: one float vector, two double vectors.
constexpr int kGroup = Vectorized<float>::size();
constexpr int kNewton = 3;
constexpr double kTrigammaSeries[] = {1.0 / 6,  -1.0 / 30,      1.0 / 42, -1.0 / 30,
                                      5.0 / 66, -691.0 / 2730, 7.0 / 6};

double trigamma(double x) {  // as _trigamma in beta.py
  double shift = 0, y = x;
  for (int i = 0; i < 12; ++i) {
    double small = y < 12 ? 1.0 : 0.0;
    shift = shift + small / (y * y);
    y = y + small;
  }
  double inv = 1 / y, inv2 = inv * inv;
  double series = kTrigammaSeries[6];
  for (int k = 5; k >= 0; --k) series = series * inv2 + kTrigammaSeries[k];
  return shift + inv + inv2 / 2 + series * inv2 * inv;
}

double digamma_step(double base, double step, double total, Digamma& digamma) {
  if (step < 1e-3 * base) {  // Taylor series, as _digamma_series
    double h = step;
    return h * (trigamma(base) +
                h / 2 *
                    (calc_polygamma<double>(base, 2) +
                     h / 3 * (calc_polygamma<double>(base, 3) + h / 4 * calc_polygamma<double>(base, 4))));
  }
  return total - digamma(base);
}

// Subnormal numbers flushed to zero (inputs and results) while it lives, on x86. The node loop
// meets them for samples near 0 (1/ε ~ x below ~1e-38 in float32, ~1e-308 in float64), where each
// operation on one costs a microcode assist (float32 Beta(0.01, 5) ran 5x slower than
// Beta(2, 3)); they enter the sums only as log(1 + u) ~ u < 1e-38 (or 1e-308) next to terms ~1.
class FlushSubnormals {
 public:
#if defined(__SSE2__)
  FlushSubnormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }  // FTZ | DAZ
  ~FlushSubnormals() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#endif
};

// The node loop. Gauss-Legendre nodes come in mirrored pairs t, 1 - t (the rules' nodes are
// sorted): for the upper node e^(w(1-t)) - 1 = (e^w - e^(wt)) / e^(wt), i.e.
// (expm1(w) - growth) / (growth + 1), three operations instead of an expm1 (~23; a node is ~125).
// Both expm1 differ by at most e^w e^(wt) ε relative to their difference, <= 3 ε for t <= 1/2.
// The terms of a pair, for each vector of the group, are independent chains the core overlaps;
// the sums add them pair by pair (lower node first), as the torch path does.
template <typename L>
void beta_nodes(const double* p, const double* bm1, const double* eps, const double* delta,
                const double* width, const Rule<L>& rule, double* m0_out, double* m1_out,
                double* mlog_out) {
  using V = Vectorized<L>;
  constexpr int W = V::size();
  constexpr int K = kGroup / W;  // vectors per group
  FlushSubnormals flush;
  L buf[5][kGroup];
  for (int k = 0; k < kGroup; ++k) {
    buf[0][k] = static_cast<L>(p[k]);
    buf[1][k] = static_cast<L>(bm1[k]);
    buf[2][k] = static_cast<L>(eps[k]);
    buf[3][k] = static_cast<L>(delta[k]);
    buf[4][k] = static_cast<L>(width[k]);
  }
  const V one(L(1));
  V a[K], b1[K], w[K], full[K], minus_delta[K], minus_inv_eps[K], m0[K], m1[K], mlog[K];
  for (int k = 0; k < K; ++k) {
    a[k] = V::loadu(buf[0] + k * W);
    b1[k] = V::loadu(buf[1] + k * W);
    minus_inv_eps[k] = V(L(-1)) / V::loadu(buf[2] + k * W);
    minus_delta[k] = V::loadu(buf[3] + k * W).neg();
    w[k] = V::loadu(buf[4] + k * W);
    full[k] = fast_expm1<L>(w[k]);
    m0[k] = m1[k] = mlog[k] = V(L(0));
  }
  // term = e^(-a s + (b-1) L(s)) e^w at s = δ growth, with its s and L(s)
  auto node = [&](int k, const V& growth, V& term, V& minus_s,
                  V& log_ratio) __attribute__((always_inline)) {
    minus_s = growth * minus_delta[k];
    log_ratio = nonnegative_log1p<L, false>(fast_expm1<L>(minus_s) * minus_inv_eps[k]);
    term = fast_exp<L>(at::vec::fmadd(a[k], minus_s, b1[k] * log_ratio)) * (growth + one);
  };
  auto add = [&](size_t i, int k, const V& term, const V& minus_s,
                 const V& log_ratio) __attribute__((always_inline)) {
    V weight(rule.weights[i]);
    m0[k] = at::vec::fmadd(term, weight, m0[k]);
    m1[k] = at::vec::fmadd(V(-rule.weights[i]) * term, minus_s, m1[k]);
    mlog[k] = at::vec::fmadd(weight * term, log_ratio, mlog[k]);
  };
  const size_t count = rule.nodes.size();
  for (size_t i = 0; i < (count + 1) / 2; ++i) {
    const size_t upper = count - 1 - i;
    V term[2][K], minus_s[2][K], log_ratio[2][K];
    for (int k = 0; k < K; ++k) {
      V growth = fast_expm1<L>(w[k] * V(rule.nodes[i]));
      node(k, growth, term[0][k], minus_s[0][k], log_ratio[0][k]);
      if (upper != i) {
        node(k, (full[k] - growth) / (growth + one), term[1][k], minus_s[1][k], log_ratio[1][k]);
      }
    }
    for (int k = 0; k < K; ++k) {
      add(i, k, term[0][k], minus_s[0][k], log_ratio[0][k]);
      if (upper != i) add(upper, k, term[1][k], minus_s[1][k], log_ratio[1][k]);
    }
  }
  for (int k = 0; k < K; ++k) {
    V scale = V::loadu(buf[3] + k * W) * w[k];  // applied in double below, as the torch path converts after scaling
    L s0[W], s1[W], s2[W];
    (m0[k] * scale).store(s0);
    (m1[k] * scale).store(s1);
    (mlog[k] * scale).store(s2);
    for (int j = 0; j < W; ++j) {
      m0_out[k * W + j] = s0[j];
      m1_out[k * W + j] = s1[j];
      mlog_out[k * W + j] = s2[j];
    }
  }
}

// The three ψ terms of a broadcast (a, b), for both orientations (p, q) = (a, b) and (b, a): the
// per-lane lookups otherwise cost as much as several nodes.
struct BetaCentred {
  double a = NAN, b = NAN, plain = 0, swapped = 0;
};

template <typename L>
void beta_group(const double* a_in, const double* b_in, const double* x_in, const double* xc_in,
                double* grad_a, double* grad_b, const std::vector<double>& lows,
                const std::vector<Rule<L>>& rules,
                Digamma& digamma, BetaCentred& memo) {
  using D = Vectorized<double>;
  constexpr int W = D::size();
  const double small = std::min(smallest(a_in, kGroup), smallest(b_in, kGroup));
  const Rule<L>& rule = tier_rule(rules, lows, small);  // (smallest counts NaN as 0)
  const double cutoff = static_cast<double>(rule.cutoff);
  const D one(1.0), zero(0.0), tiny(std::numeric_limits<double>::min()), C(cutoff);
  double p[kGroup], q[kGroup], y[kGroup], yc[kGroup], bm1[kGroup], eps[kGroup], delta[kGroup],
      width[kGroup], mirror[kGroup];
  // The set-up is a chain of ~15 dependent transcendentals and divisions per vector (latency-bound):
  // each stage runs over the group's vectors in turn so that the core overlaps their chains.
  constexpr int K = kGroup / W;
  D pp[K], b1[K], e[K], end[K], concave[K];
  for (int v = 0; v < K; ++v) {
    const int j = v * W;
    D a = D::loadu(a_in + j), b = D::loadu(b_in + j);
    D x = at::vec::clamp_min(D::loadu(x_in + j), tiny);
    D xc = at::vec::clamp_min(D::loadu(xc_in + j), tiny);
    D total = a + b - one;
    D lower_ok = (b <= one) | (x * total <= a);
    D upper_ok = (a <= one) | (x * total >= a - one);
    D mir = (lower_ok == zero) | (upper_ok & (x * (a + b) > a));
    pp[v] = select(mir, b, a);
    D qq = select(mir, a, b);
    D yy = select(mir, xc, x), yyc = select(mir, x, xc);
    e[v] = yyc / yy;
    b1[v] = qq - one;
    D slope = at::vec::clamp_min(pp[v] - b1[v] / e[v], tiny);
    end[v] = at::vec::minimum(C / slope, (C - b1[v] * yyc.log()) / pp[v]);
    // The root of the quadratic Taylor expansion of φ (curvature κ = (b-1)(1+ε)/ε²), which the
    // bounds above overshoot by ~1/√κ-fold when both concentrations are large (see beta.py)
    D kappa = b1[v] * (one + e[v]) / (e[v] * e[v]);
    D quadratic = D(2 * cutoff) / (slope + (slope * slope + D(2 * cutoff) * kappa).sqrt());
    end[v] = select(quadratic > zero, at::vec::minimum(end[v], quadratic), end[v]);
    concave[v] = b1[v] > zero;
    pp[v].store(p + j);
    qq.store(q + j);
    yy.store(y + j);
    yyc.store(yc + j);
    b1[v].store(bm1 + j);
    e[v].store(eps + j);
    mir.store(mirror + j);
  }
  D minus_inv_e[K];
  for (int v = 0; v < K; ++v) minus_inv_e[v] = D(-1.0) / e[v];
  for (int k = 0; k < kNewton; ++k) {
    for (int v = 0; v < K; ++v) {
      D growth = fast_expm1<double>(end[v].neg());
      D log_ratio = log1p_nonnegative(growth * minus_inv_e[v]);
      D phi = pp[v].neg() * end[v] + b1[v] * log_ratio;
      D dphi = pp[v].neg() + b1[v] * fast_exp<double>(end[v].neg()) / (e[v] - growth);
      end[v] = select(concave[v], end[v] - (phi + C) / dphi, end[v]);
    }
  }
  for (int v = 0; v < K; ++v) {
    D ends = select(concave[v], end[v], C / pp[v]);
    D d = at::vec::clamp_max(e[v], one);
    d.store(delta + v * W);
    log1p_nonnegative(ends / d).store(width + v * W);
  }
  double m0[kGroup], m1[kGroup], mlog[kGroup];
  beta_nodes<L>(p, bm1, eps, delta, width, rule, m0, m1, mlog);
  double centred_a[kGroup], centred_b[kGroup];
  bool shared = true;  // every lane has the memo's (a, b)? (never for NaN)
  for (int k = 0; k < kGroup; ++k) shared = shared && a_in[k] == memo.a && b_in[k] == memo.b;
  if (!shared) {
    shared = true;
    for (int k = 1; k < kGroup; ++k) shared = shared && a_in[k] == a_in[0] && b_in[k] == b_in[0];
    if (shared && a_in[0] == a_in[0] && b_in[0] == b_in[0]) {
      double total = digamma(a_in[0] + b_in[0]);
      memo = {a_in[0], b_in[0], digamma_step(a_in[0], b_in[0], total, digamma),
              digamma_step(b_in[0], a_in[0], total, digamma)};
    } else {
      shared = false;
    }
  }
  for (int k = 0; k < kGroup; ++k) {
    if (shared) {  // mirrored lanes have (p, q) = (b, a)
      const bool swapped = mirror[k] != 0;
      centred_a[k] = swapped ? memo.swapped : memo.plain;
      centred_b[k] = swapped ? memo.plain : memo.swapped;
    } else {
      double total = digamma(p[k] + q[k]);
      centred_a[k] = digamma_step(p[k], q[k], total, digamma);
      centred_b[k] = digamma_step(q[k], p[k], total, digamma);
    }
  }
  for (int j = 0; j < kGroup; j += W) {
    D yy = D::loadu(y + j), yyc = D::loadu(yc + j);
    // log of the larger of y, 1 - y as log1p(-the smaller): 1 - y rounded loses it (_log_pair)
    D upper = yy >= D(0.5);
    D smaller = select(upper, yyc, yy);
    D log_smaller = smaller.log(), log_larger = smaller.neg().log1p();
    D ca = select(upper, log_larger, log_smaller) + D::loadu(centred_a + j);
    D cb = select(upper, log_smaller, log_larger) + D::loadu(centred_b + j);
    D mm0 = D::loadu(m0 + j), mm1 = D::loadu(m1 + j), ml = D::loadu(mlog + j);
    D first = yy * (ca * mm0 - mm1);
    D second = yy * (cb * mm0 + ml);
    D mir = D::loadu(mirror + j);
    select(mir, second, first.neg()).store(grad_a + j);
    select(mir, first, second.neg()).store(grad_b + j);
  }
}

// A full group's inputs as double (float64: the tensor's own memory), and where its results go
// (float64: the output tensor itself; float32: the buffer, converted after).
inline const double* widen(const double* values, double*) { return values; }
inline const double* widen(const float* values, double* buffer) {
  for (int k = 0; k < kGroup; ++k) buffer[k] = static_cast<double>(values[k]);
  return buffer;
}
inline double* output(double* values, double*) { return values; }
inline double* output(float*, double* buffer) { return buffer; }

std::tuple<at::Tensor, at::Tensor> beta_grad(const at::Tensor& a, const at::Tensor& b,
                                             const at::Tensor& x,
                                             const std::optional<at::Tensor>& xc,
                                             at::ArrayRef<double> lows, at::TensorList nodes,
                                             at::TensorList weights,
                                             at::ArrayRef<double> cutoffs) {
  TORCH_CHECK(a.device().is_cpu(), "beta_grad: CPU tensors only");
  TORCH_CHECK(a.sizes() == b.sizes() && a.sizes() == x.sizes(), "beta_grad: shapes differ");
  TORCH_CHECK(!xc.has_value() || xc->sizes() == x.sizes(), "beta_grad: complement shape differs");
  TORCH_CHECK(!cutoffs.empty() && lows.size() == cutoffs.size() && nodes.size() == cutoffs.size() &&
                  weights.size() == cutoffs.size(),
              "beta_grad: one low, nodes, weights and cutoff per tier");
  auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "beta_grad: float32/float64 only");
  auto ac = a.contiguous(), bc = b.contiguous(), xcont = x.contiguous();
  at::Tensor cc = xc.has_value() ? xc->contiguous() : at::Tensor();
  auto grad_a = at::empty(x.sizes(), x.options());
  auto grad_b = at::empty(x.sizes(), x.options());
  const int64_t total = x.numel();
  std::vector<double> lows_v(lows.begin(), lows.end());
  AT_DISPATCH_FLOATING_TYPES(dtype, "beta_grad", [&] {
    using T = scalar_t;
    using L = T;  // node sums in the caller's precision
    std::vector<Rule<L>> rules;
    for (size_t i = 0; i < cutoffs.size(); ++i) {
      rules.push_back(make_rule<L>(nodes[i], weights[i], cutoffs[i]));
    }
    const T* ap = ac.data_ptr<T>();
    const T* bp = bc.data_ptr<T>();
    const T* xp = xcont.data_ptr<T>();
    const T* cp = cc.defined() ? cc.data_ptr<T>() : nullptr;
    T* gap = grad_a.data_ptr<T>();
    T* gbp = grad_b.data_ptr<T>();
    const int64_t groups = (total + kGroup - 1) / kGroup;
    at::parallel_for(0, groups, 128, [&](int64_t begin, int64_t end) {
      Digamma digamma;
      BetaCentred memo;
      double da[kGroup], db[kGroup], dx[kGroup], dc[kGroup], ga[kGroup], gb[kGroup];
      for (int64_t g = begin; g < end; ++g) {
        const int64_t start = g * kGroup;
        const int64_t count = std::min<int64_t>(kGroup, total - start);
        if (count == kGroup) {  // straight (vectorized) copies, and none of float64 inputs
          const double* a_group = widen(ap + start, da);
          const double* b_group = widen(bp + start, db);
          const double* x_group = widen(xp + start, dx);
          if (cp) {
            for (int k = 0; k < kGroup; ++k) dc[k] = static_cast<double>(cp[start + k]);
          } else {
            for (int k = 0; k < kGroup; ++k) dc[k] = 1.0 - x_group[k];
          }
          double* grad_a_group = output(gap + start, ga);
          double* grad_b_group = output(gbp + start, gb);
          beta_group<L>(a_group, b_group, x_group, dc, grad_a_group, grad_b_group, lows_v, rules,
                        digamma, memo);
          if (grad_a_group != ga) continue;  // written in place
        } else {
          for (int k = 0; k < kGroup; ++k) {  // padding: copies of the group's first element
            const int64_t i = start + (k < count ? k : 0);
            da[k] = static_cast<double>(ap[i]);
            db[k] = static_cast<double>(bp[i]);
            dx[k] = static_cast<double>(xp[i]);
            dc[k] = cp ? static_cast<double>(cp[i]) : 1.0 - dx[k];
          }
          beta_group<L>(da, db, dx, dc, ga, gb, lows_v, rules, digamma, memo);
        }
        for (int k = 0; k < count; ++k) {
          gap[start + k] = static_cast<T>(ga[k]);
          gbp[start + k] = static_cast<T>(gb[k]);
        }
      }
    });
  });
  return {grad_a, grad_b};
}

// The node loops' exp and expm1 over a tensor, for tests/special/test_native_kernels.py.
std::tuple<at::Tensor, at::Tensor> exp_expm1(const at::Tensor& y) {
  TORCH_CHECK(y.device().is_cpu(), "exp_expm1: CPU tensors only");
  auto yc = y.contiguous();
  auto e = at::empty(y.sizes(), y.options()), m = at::empty(y.sizes(), y.options());
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "exp_expm1", [&] {
    using V = Vectorized<scalar_t>;
    constexpr int W = V::size();
    const scalar_t* yp = yc.data_ptr<scalar_t>();
    scalar_t* ep = e.data_ptr<scalar_t>();
    scalar_t* mp = m.data_ptr<scalar_t>();
    for (int64_t i = 0; i < y.numel(); i += W) {
      const int64_t count = std::min<int64_t>(W, y.numel() - i);
      scalar_t in[W] = {}, out_e[W], out_m[W];
      std::copy(yp + i, yp + i + count, in);
      fast_exp<scalar_t>(V::loadu(in)).store(out_e);
      fast_expm1<scalar_t>(V::loadu(in)).store(out_m);
      std::copy(out_e, out_e + count, ep + i);
      std::copy(out_m, out_m + count, mp + i);
    }
  });
  return {e, m};
}

// The Beta node loop's float64 log1p over a tensor of values >= 0, for the tests.
at::Tensor log1p_nonnegative_op(const at::Tensor& u) {
  TORCH_CHECK(u.device().is_cpu() && u.scalar_type() == at::kDouble,
              "log1p_nonnegative: CPU float64 tensors only");
  using V = Vectorized<double>;
  constexpr int W = V::size();
  auto uc = u.contiguous();
  auto out = at::empty(u.sizes(), u.options());
  const double* up = uc.data_ptr<double>();
  double* op = out.data_ptr<double>();
  for (int64_t i = 0; i < u.numel(); i += W) {
    const int64_t count = std::min<int64_t>(W, u.numel() - i);
    double in[W] = {}, result[W];
    std::copy(up + i, up + i + count, in);
    log1p_nonnegative(V::loadu(in)).store(result);
    std::copy(result, result + count, op + i);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Gamma sampler: one round of Marsaglia & Tsang's rejection sampler on torch's random words
// (special/sampling.py has the algorithm, the words' bit layout and the torch twin of this pass,
// operation for operation; tests/special/test_sampling.py checks that both give the same draws).
// Registered as torch.ops.stochgrad_special.gamma_sample_.

namespace sampler {

using D = Vectorized<double>;

constexpr double kTwoPow31 = 2147483648.0, kTwoPow32 = 4294967296.0;
constexpr double kTwoPi = 6.283185307179586, kThird = 1.0 / 3.0, kSeriesLimit = 0.03125;
constexpr double kProductBelow = -0.25;

// Uniforms in (0, 1) from bits of a random word in [0, 2^63): (k + 1/2) 2^-bits, exact in double.
inline double high32(int64_t word) {  // bits 31-62
  return (static_cast<double>(word >> 31) + 0.5) / kTwoPow32;
}
inline double low31(int64_t word) {  // bits 0-30
  return (static_cast<double>(word & 0x7fffffff) + 0.5) / kTwoPow31;
}

// log1p(t) for t >= -1 as log(w) t / (w - 1), w = 1 + t (t where w = 1): within a few ulps
// given Sleef's log (Goldberg 1991, Theorem 4), at half the cost of Sleef's double-double log1p.
inline D log1p_any(const D& t) {
  D w = D(1.0) + t;
  return D::blendv(w.log() * t / (w - D(1.0)), t, w == D(1.0));
}

// R(t) = log1p(t) - t + t^2/2 - t^3/3: its series to t^14 where |t| < 2^-5 (truncation below
// 1e-17 relative), the direct form elsewhere (cancellation of at most 4/|t|^3 ~ 2^17 ulps).
inline D log1p_remainder(const D& t, const D& log1p_t) {
  D p(-1.0 / 14);
  for (int k = 13; k >= 4; --k) {
    p = p * t + D((k % 2 ? 1.0 : -1.0) / k);
  }
  D t2 = t * t;
  D series = p * (t2 * t2);
  D direct = ((log1p_t - t) + D(0.5) * t2) - t2 * t / D(3.0);
  return D::blendv(direct, series, t.abs() < D(kSeriesLimit));
}

// Per-concentration constants d, c = 1/(3√d), 3d/4 and log d (none overflows for any finite a), kept while the concentration repeats
// (parameters are usually broadcast); computed as the torch twin computes them.
struct Constants {
  double a = std::numeric_limits<double>::quiet_NaN();
  D d, c, three_quarters_d, log_d;
};

inline void constants(const D& a, double first, bool log_space, Constants& memo, D& d, D& c,
                      D& three_quarters_d, D& log_d) {
  constexpr int W = D::size();
  if ((a != D(memo.a)).zero_mask() == (1 << W) - 1) {  // every lane equals the memo's a
    d = memo.d, c = memo.c, three_quarters_d = memo.three_quarters_d, log_d = memo.log_d;
    return;
  }
  d = D::blendv(a, a + D(1.0), a < D(1.0)) - D(kThird);
  c = D(1.0) / (D(3.0) * d.sqrt());
  three_quarters_d = D(0.75) * d;
  log_d = log_space ? d.log() : D(0.0);
  if ((a != D(first)).zero_mask() == (1 << W) - 1) {
    memo.a = first, memo.d = d, memo.c = c, memo.three_quarters_d = three_quarters_d;
    memo.log_d = log_d;
  }
}

// One group of 2W elements (W pairs of words, padded): each element's draw (log x or x) and
// whether it was accepted.
template <int columns, bool log_space>
void group(const double* a_in, const int64_t* words, Constants& memo, double* draw,
           uint8_t* accepted) {
  constexpr int W = D::size();
  constexpr int all = (1 << W) - 1;
  // Box-Muller over W pairs: radius from 32 bits, angle from 31.
  double ur[W], ut[W], cosn[W], sinn[W], normal[2 * W], ua[2 * W], ub[2 * W];
  for (int p = 0; p < W; ++p) {
    const int64_t* w = words + p * columns;
    ur[p] = high32(w[0]);
    ut[p] = low31(w[0]);
    if constexpr (columns == 2) {  // acceptance uniforms of 32 and 31 bits
      ua[2 * p] = high32(w[1]);
      ua[2 * p + 1] = low31(w[1]);
    } else {  // boost and acceptance uniforms of 32 and 31 bits, one word per element
      ub[2 * p] = high32(w[1]);
      ua[2 * p] = low31(w[1]);
      ub[2 * p + 1] = high32(w[2]);
      ua[2 * p + 1] = low31(w[2]);
    }
  }
  D radius = (D(-2.0) * D::loadu(ur).log()).sqrt();
  D angle = D(kTwoPi) * D::loadu(ut);
  (radius * angle.cos()).store(cosn);
  (radius * angle.sin()).store(sinn);
  for (int p = 0; p < W; ++p) {
    normal[2 * p] = cosn[p];
    normal[2 * p + 1] = sinn[p];
  }
  for (int half = 0; half < 2; ++half) {
    const int offset = half * W;
    D a = D::loadu(a_in + offset);
    D n = D::loadu(normal + offset);
    D u = D::loadu(ua + offset);
    D d, c, three_quarters_d, log_d;
    constants(a, a_in[offset], log_space, memo, d, c, three_quarters_d, log_d);
    D t = c * n;
    D proposed = t > D(-1.0);
    // The squeeze of sampling.py's _squeeze_accepts: u m < m - (3d/4) t^4, m = 1 + min(t, 0).
    D m = D(1.0) + at::vec::minimum(t, D(0.0));
    D t2 = t * t;
    D lhs = u * m;
    D rhs = m - three_quarters_d * (t2 * t2);
    D accept = proposed & (lhs < rhs);
    D undecided = proposed & (lhs >= rhs);
    const bool decide = undecided.zero_mask() != all;
    D log1p_t = log_space || decide ? log1p_any(t) : D(0.0);
    if (decide) {
      D bound = d * (D(3.0) * log1p_remainder(t, log1p_t));
      accept = accept | (undecided & (u.log() < bound));
    }
    D value;
    if constexpr (log_space) {
      value = log_d + D(3.0) * log1p_t;
    } else {  // see _linear_draw in sampling.py
      D w = D(1.0) + t;
      D expanded = d + d * (t * (D(3.0) + t * (D(3.0) + t)));
      value = D::blendv(expanded, d * (w * w * w), t < D(kProductBelow));
    }
    D small = a < D(1.0);
    if (small.zero_mask() != all) {
      D shrink = D::loadu(ub + offset).log() / a;
      if constexpr (log_space) {
        value = D::blendv(value, value + shrink, small);
      } else {
        value = D::blendv(value, value * shrink.exp(), small);
      }
    }
    // NaN or negative a: NaN; a = inf: inf; both accepted, so that no round can loop on them.
    D invalid = a.isnan() | (a < D(0.0));
    D infinite = a == D(std::numeric_limits<double>::infinity());
    value = D::blendv(value, D(std::numeric_limits<double>::infinity()), infinite);
    value = D::blendv(value, D(std::numeric_limits<double>::quiet_NaN()), invalid);
    accept = accept | invalid | infinite;
    value.store(draw + offset);
    const int rejected = accept.zero_mask();  // an all-ones (accepted) lane is a NaN, never 0
    for (int k = 0; k < W; ++k) {
      accepted[offset + k] = !((rejected >> k) & 1);
    }
  }
}

}  // namespace sampler

// One round over the elements concentration[index] (all of them without index): draws the
// round's random words from the generator (as sampling._round does: 3 words a pair if some
// concentration is not >= 1, else 2), writes the accepted draws to out[index] and returns the
// positions still to draw, in order.
at::Tensor gamma_sample_(at::Tensor& out, const at::Tensor& concentration,
                         const std::optional<at::Tensor>& index,
                         std::optional<at::Generator> generator, bool log_space) {
  using sampler::D;
  constexpr int W = D::size();
  TORCH_CHECK(out.device().is_cpu() && concentration.device().is_cpu(),
              "gamma_sample_: CPU tensors only");
  TORCH_CHECK(out.dim() == 1 && out.is_contiguous() && concentration.dim() == 1 &&
                  concentration.is_contiguous() && out.sizes() == concentration.sizes() &&
                  out.scalar_type() == concentration.scalar_type(),
              "gamma_sample_: out and concentration must be contiguous vectors of one dtype");
  TORCH_CHECK(!index.has_value() || (index->dim() == 1 && index->is_contiguous() &&
                                     index->scalar_type() == at::kLong),
              "gamma_sample_: index must be a contiguous int64 vector");
  const int64_t count = index.has_value() ? index->numel() : concentration.numel();
  auto dtype = concentration.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "gamma_sample_: float32/float64 only");
  const int64_t* ip = index.has_value() ? index->data_ptr<int64_t>() : nullptr;
  bool boosted = false;
  AT_DISPATCH_FLOATING_TYPES(dtype, "gamma_sample_boost", [&] {
    const scalar_t* ap = concentration.data_ptr<scalar_t>();
    for (int64_t e = 0; e < count && !boosted; ++e) {
      boosted = !(ap[ip ? ip[e] : e] >= 1);  // NaN too, as the torch twin's min
    }
  });
  auto words = at::empty({(count + 1) / 2, boosted ? 3 : 2}, out.options().dtype(at::kLong));
  words.random_(generator);
  // Room for the last group's padding, and for the 8-byte reads of the scan below (W = 2 on
  // aarch64, where 2W bytes would not do).
  std::vector<uint8_t> accepted(count + std::max<int64_t>(2 * W, 8));
  AT_DISPATCH_FLOATING_TYPES(dtype, "gamma_sample_", [&] {
    using T = scalar_t;
    const T* ap = concentration.data_ptr<T>();
    T* op = out.data_ptr<T>();
    const int64_t* wp = words.data_ptr<int64_t>();
    const int64_t columns = words.size(1);
    const int64_t groups = (count + 2 * W - 1) / (2 * W);
    // Threads only for 2^20 elements a thread or more: a parallel region waits for the other
    // threads to wake, which on a loaded machine costs more than the pass itself (10^6 draws of
    // Gamma(5) at load average 4 on 2 cores: 56 ms on 2 threads, 18 ms on one, grain 2^16). The
    // serial random words are a third of the time anyway.
    const int64_t grain = (int64_t{1} << 20) / (2 * W);
    at::parallel_for(0, groups, grain, [&](int64_t begin, int64_t end) {
      double a_in[2 * W], draw[2 * W];
      int64_t padded[3 * W];
      sampler::Constants memo;
      for (int64_t g = begin; g < end; ++g) {
        const int64_t start = g * 2 * W;
        const int64_t n = std::min<int64_t>(2 * W, count - start);
        if (!ip && n == 2 * W) {
          // + 0.0 turns -0.0 into +0.0 (as the concentration 0 it is), whose boost gives x = 0
          // rather than log(U) / -0.0 = +inf
          for (int k = 0; k < 2 * W; ++k) a_in[k] = static_cast<double>(ap[start + k]) + 0.0;
        } else {
          for (int k = 0; k < 2 * W; ++k) {  // padding: copies of the group's first element
            const int64_t e = start + (k < n ? k : 0);
            a_in[k] = static_cast<double>(ap[ip ? ip[e] : e]) + 0.0;
          }
        }
        const int64_t* group_words = wp + (start / 2) * columns;
        if (n < 2 * W) {  // the last group: pad its words with copies of its first pair
          const int64_t pairs = (n + 1) / 2;
          for (int64_t j = 0; j < W * columns; ++j) {
            padded[j] = group_words[j < pairs * columns ? j : j % columns];
          }
          group_words = padded;
        }
        uint8_t* flags = accepted.data() + start;
        if (columns == 2) {
          (log_space ? sampler::group<2, true> : sampler::group<2, false>)(
              a_in, group_words, memo, draw, flags);
        } else {
          (log_space ? sampler::group<3, true> : sampler::group<3, false>)(
              a_in, group_words, memo, draw, flags);
        }
        for (int k = 0; k < n; ++k) {
          if (accepted[start + k]) op[ip ? ip[start + k] : start + k] = static_cast<T>(draw[k]);
        }
      }
    });
  });
  // The rejected positions, in order (serial: a few % of the pass); 8 flags at a time.
  int64_t rejected = 0;
  for (int64_t e = 0; e < count; ++e) rejected += !accepted[e];
  auto pending = at::empty({rejected}, concentration.options().dtype(at::kLong));
  int64_t* pp = pending.data_ptr<int64_t>();
  constexpr uint64_t kAllAccepted = 0x0101010101010101ull;
  for (int64_t e = 0, j = 0; j < rejected; e += 8) {
    uint64_t flags;
    std::memcpy(&flags, accepted.data() + e, 8);  // the padding keeps this inside the vector
    if (flags == kAllAccepted) continue;
    for (int64_t k = e; k < std::min<int64_t>(e + 8, count); ++k) {
      if (!accepted[k]) pp[j++] = ip ? ip[k] : k;
    }
  }
  return pending;
}

}  // namespace

TORCH_LIBRARY(stochgrad_special, m) {
  m.def(
      "gamma_log_grad(Tensor a, Tensor log_x, float[] lows, Tensor[] nodes, Tensor[] weights, "
      "float[] cutoffs, bool from_sample=False) -> Tensor");
  m.def(
      "beta_grad(Tensor a, Tensor b, Tensor x, Tensor? xc, float[] lows, Tensor[] nodes, "
      "Tensor[] weights, float[] cutoffs) -> (Tensor, Tensor)");
  m.def("exp_expm1(Tensor y) -> (Tensor, Tensor)");
  m.def("log1p_nonnegative(Tensor u) -> Tensor");
  m.def(
      "gamma_sample_(Tensor(a!) out, Tensor concentration, Tensor? index, Generator? generator, "
      "bool log_space) -> Tensor");
}

TORCH_LIBRARY_IMPL(stochgrad_special, CPU, m) {
  m.impl("gamma_log_grad", &gamma_log_grad);
  m.impl("beta_grad", &beta_grad);
  m.impl("exp_expm1", &exp_expm1);
  m.impl("log1p_nonnegative", &log1p_nonnegative_op);
  m.impl("gamma_sample_", &gamma_sample_);
}
