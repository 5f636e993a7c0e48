//! Branch-free `exp`, `sigmoid` and `tanh` for f32, written so that a loop over a slice
//! vectorises (libm's `expf` and `tanhf` are scalar calls), and [`simd`], which compiles such a
//! loop a second time for AVX2 and FMA and picks that copy at run time where the CPU has them.
//!
//! The exponential is Cody and Waite's range reduction with Cephes' degree-5 polynomial:
//! within 2 ulp of the true value on `[-87, 88]`; below it 0, above it `e^88`. NaN stays NaN.
//!
//! No function here returns a subnormal float. Where the true value is below the normal range
//! (under 1.2e-38) they return 0, as a CPU set to flush to zero would: a subnormal operand
//! makes an Intel core take a microcode assist for every arithmetic instruction it enters, and
//! a product with such operands runs many times slower. (`exp` used to clamp its argument at
//! -87, so a masked attention score became `e^-87` times the row's normaliser, about 1e-40:
//! three quarters of a causal block's probabilities were subnormal, and the transformer LM's
//! training step took 2.2 times as long on a Xeon that assists them.)

/// `e^x` within 2 ulp for `x` in `[-87, 88]`; 0 below (the true value is under 1.7e-38, at
/// the bottom of the normal range), `e^88` above.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, the first exact in few bits, so that `x - n ln 2` loses nothing.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer, kept in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let below = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n is in [-126, 127]: 2^n is a normal float built from its exponent bits.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    // A select, not a branch: the loops that call this still vectorise.
    if below { 0.0 } else { e * scale }
}

/// The logistic function `1 / (1 + e^-x)`, within 3e-7 of the true value; 0 below -87, where
/// the true value is under 1.7e-38.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let s = 1.0 / (1.0 + exp(-x));
    if x < -87.0 { 0.0 } else { s }
}

/// The hyperbolic tangent, as `1 - 2 / (e^2x + 1)`: within 3e-7 of the true value (absolute;
/// near 0 the relative error is larger).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// Independent accumulators of the reductions below (the kernels' row and channel sums): a
/// float sum kept in one accumulator is a serial chain of additions the compiler may not
/// reorder, so a row's sum is kept in this many lanes (which it vectorises) and added up at the
/// end.
pub(crate) const LANES: usize = 16;

/// `sum_i f(a_i, b_i, c_i)` in [`LANES`] partial sums (inlined into the caller's `simd!` copy).
#[inline(always)]
pub(crate) fn sum3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len()).min(c.len());
    let full = n / LANES * LANES;
    let mut acc = [0.0f32; LANES];
    for ((ca, cb), cc) in a[..full]
        .chunks_exact(LANES)
        .zip(b[..full].chunks_exact(LANES))
        .zip(c[..full].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] += f(ca[l], cb[l], cc[l]);
        }
    }
    let mut total = 0.0f32;
    for i in full..n {
        total += f(a[i], b[i], c[i]);
    }
    acc.iter().fold(total, |t, &v| t + v)
}

/// `sum_i f(a_i)` in [`LANES`] partial sums.
#[inline(always)]
pub(crate) fn sum1(a: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    sum3(a, a, a, |x, _, _| f(x))
}

/// Defines `fn $name(args) -> ret` that runs `$body` compiled for AVX-512 where the CPU has it,
/// else for AVX2 and FMA where it has them (detected once, at run time), else for the build's
/// baseline. The body should be loops over slices of the inlined functions above, so that the
/// compiler vectorises it at any width. Rust never contracts `a * b + c` into an FMA, and the
/// sums above keep their order, so every width gives the same bits.
macro_rules! simd {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn widest($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::math::has_avx512() {
                    // SAFETY: the CPU has these AVX-512 subsets, AVX2 and FMA (checked at run
                    // time).
                    return unsafe { widest($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::math::has_avx2() {
                    // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd;

/// Whether this CPU has AVX-512 F, BW, DQ and VL besides AVX2 and FMA (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        has_avx2()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl")
    })
}

/// Whether this CPU has AVX2 and FMA (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[cfg(test)]
mod tests {
    use super::*;

    simd! {
        fn sigmoid_all(xs: &[f32], out: &mut [f32]) {
            for (o, &x) in out.iter_mut().zip(xs) {
                *o = sigmoid(x);
            }
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_f64_exponential() {
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            let ulp = (want as f32).abs() * f32::EPSILON;
            assert!(
                (got - want).abs() <= 2.0 * ulp as f64,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.0137;
        }
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }

    /// Never a subnormal: below the normal range the functions give 0 (flush to zero).
    #[test]
    fn no_result_is_subnormal() {
        let mut x = -200.0f32;
        while x <= 200.0 {
            for (name, v) in [("exp", exp(x)), ("sigmoid", sigmoid(x)), ("tanh", tanh(x))] {
                assert!(!v.is_subnormal(), "{name}({x}) = {v:e} is subnormal");
            }
            x += 0.0173;
        }
        for tiny in [-87.01f32, -87.5, -103.0, -1e6, f32::MIN, f32::NEG_INFINITY] {
            assert_eq!(exp(tiny), 0.0, "exp({tiny})");
            assert_eq!(sigmoid(tiny), 0.0, "sigmoid({tiny})");
        }
        // The last input still computed: a normal float within 2 ulp.
        let at = exp(-87.0) as f64;
        assert!((at - (-87.0f64).exp()).abs() <= 2.0 * (at as f32 * f32::EPSILON) as f64);
    }

    #[test]
    fn sigmoid_and_tanh_are_close_to_f64_and_saturate() {
        let mut x = -30.0f32;
        while x <= 30.0 {
            let s = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((sigmoid(x) as f64 - s).abs() < 3e-7, "sigmoid({x})");
            assert!(
                (tanh(x) as f64 - (x as f64).tanh()).abs() < 3e-7,
                "tanh({x})"
            );
            x += 0.001_7;
        }
        for big in [100.0f32, 1e6, f32::INFINITY] {
            assert_eq!(sigmoid(big), 1.0);
            assert!((0.0..1e-37).contains(&sigmoid(-big)));
            assert_eq!(tanh(big), 1.0);
            assert_eq!(tanh(-big), -1.0);
        }
        assert!(sigmoid(f32::NAN).is_nan() && tanh(f32::NAN).is_nan());
    }

    #[test]
    fn the_dispatched_loop_matches_the_scalar_function() {
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.037).collect();
        let mut out = vec![0.0; xs.len()];
        sigmoid_all(&xs, &mut out);
        for (&x, &o) in xs.iter().zip(&out) {
            assert!((o - sigmoid(x)).abs() <= 1e-7, "{x}: {o}");
        }
    }
}
