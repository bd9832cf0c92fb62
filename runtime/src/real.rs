//! The numbers generated flow code computes with: [`Real`] scalars (`f32`, `f64`) and
//! [`Lanes`], a block of rows computed together so that the compiler vectorizes the
//! arithmetic. Both implement [`Ops`], the operations of the flow language, so one kernel
//! body serves a single row (`V = T`) and a block of rows (`V = Lanes<T, L>`).
//!
//! The values are exactly those of the compiler's reference evaluator: `f64` ops are libm's
//! (composites from [`crate::math`]); in `f32` the primitive ops are `f32`'s own and the
//! composite ones (sigmoid, logit, softplus, sign, logcosh, powrecip) are computed in `f64`
//! from the `f32` arguments and rounded once.
//!
//! ```
//! use runtime::real::{Block, Lanes, Ops};
//! let x = Lanes([0.0f64, 1.0, -2.0, 3.0]);
//! let y = Ops::softplus(x) - <Lanes<f64, 4> as Block<f64>>::splat(0.5);
//! assert_eq!(y.0[1], runtime::math::softplus(1.0) - 0.5);
//! // `ifpos(c, a, b)`: a where c > 0, else b (each branch computed only if some lane takes it)
//! let s = Ops::ifpos(x, || x * x, || -x);
//! assert_eq!(s.0, [-0.0, 1.0, 2.0, 9.0]);
//! ```

use crate::math;
use core::fmt::{Debug, Display};
use core::ops::{Add, Div, Mul, Neg, Sub};

/// The operations of the flow language on a value (a scalar or a block of lanes).
pub trait Ops: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self> + Neg<Output = Self> {
    fn pow(self, e: Self) -> Self;
    fn sqrt(self) -> Self;
    fn cbrt(self) -> Self;
    fn exp(self) -> Self;
    fn expm1(self) -> Self;
    fn log(self) -> Self;
    fn log1p(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tan(self) -> Self;
    fn atan(self) -> Self;
    fn sinh(self) -> Self;
    fn cosh(self) -> Self;
    fn tanh(self) -> Self;
    fn asinh(self) -> Self;
    fn acosh(self) -> Self;
    fn atanh(self) -> Self;
    fn sigmoid(self) -> Self;
    fn logit(self) -> Self;
    fn softplus(self) -> Self;
    fn abs(self) -> Self;
    fn sign(self) -> Self;
    /// log(cosh(self)).
    fn logcosh(self) -> Self;
    /// sqrt(self² + b²) without overflow.
    fn hypot(self, b: Self) -> Self;
    /// self^(1/d), the reciprocal carried exactly.
    fn powrecip(self, d: Self) -> Self;
    /// `then()` where self > 0, else `otherwise()` (NaN takes `otherwise`). A branch is
    /// evaluated only when some lane takes it.
    fn ifpos(self, then: impl FnOnce() -> Self, otherwise: impl FnOnce() -> Self) -> Self;
}

/// A floating-point scalar: `f32` or `f64`.
pub trait Real: Ops + PartialOrd + Default + Debug + Display + Send + Sync + 'static {
    const ZERO: Self;
    /// `"f32"` or `"f64"`.
    const NAME: &'static str;
    /// The block of rows the batch functions compute together: 256 bits of lanes
    /// (`Lanes<f64, 4>`, `Lanes<f32, 8>`, an AVX register; on W2, 2 to 16 lanes measured
    /// within a few percent of each other).
    type Block: Block<Self>;
    /// The nearest value (an `f64` constant rounded to this type).
    fn from_f64(v: f64) -> Self;
    /// The value as an `f64` (exact).
    fn to_f64(self) -> f64;
}

macro_rules! scalar {
    ($t:ty, $name:literal, $lanes:literal, composite: $via:ident) => {
        impl Ops for $t {
            #[inline(always)]
            fn pow(self, e: Self) -> Self {
                self.powf(e)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn cbrt(self) -> Self {
                <$t>::cbrt(self)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn expm1(self) -> Self {
                self.exp_m1()
            }
            #[inline(always)]
            fn log(self) -> Self {
                self.ln()
            }
            #[inline(always)]
            fn log1p(self) -> Self {
                self.ln_1p()
            }
            #[inline(always)]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn tan(self) -> Self {
                <$t>::tan(self)
            }
            #[inline(always)]
            fn atan(self) -> Self {
                <$t>::atan(self)
            }
            #[inline(always)]
            fn sinh(self) -> Self {
                <$t>::sinh(self)
            }
            #[inline(always)]
            fn cosh(self) -> Self {
                <$t>::cosh(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn asinh(self) -> Self {
                <$t>::asinh(self)
            }
            #[inline(always)]
            fn acosh(self) -> Self {
                <$t>::acosh(self)
            }
            #[inline(always)]
            fn atanh(self) -> Self {
                <$t>::atanh(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn hypot(self, b: Self) -> Self {
                <$t>::hypot(self, b)
            }
            #[inline(always)]
            fn sigmoid(self) -> Self {
                $via(self, math::sigmoid)
            }
            #[inline(always)]
            fn logit(self) -> Self {
                $via(self, math::logit)
            }
            #[inline(always)]
            fn softplus(self) -> Self {
                $via(self, math::softplus)
            }
            #[inline(always)]
            fn sign(self) -> Self {
                $via(self, math::sign)
            }
            #[inline(always)]
            fn logcosh(self) -> Self {
                $via(self, math::logcosh)
            }
            #[inline(always)]
            fn powrecip(self, d: Self) -> Self {
                math::pow_recip(self as f64, d as f64) as $t
            }
            #[inline(always)]
            fn ifpos(self, then: impl FnOnce() -> Self, otherwise: impl FnOnce() -> Self) -> Self {
                if self > 0.0 {
                    then()
                } else {
                    otherwise()
                }
            }
        }

        impl Real for $t {
            const ZERO: Self = 0.0;
            const NAME: &'static str = $name;
            type Block = Lanes<$t, $lanes>;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    };
}

#[inline(always)]
fn direct(a: f64, f: fn(f64) -> f64) -> f64 {
    f(a)
}

#[inline(always)]
fn widened(a: f32, f: fn(f64) -> f64) -> f32 {
    f(a as f64) as f32
}

scalar!(f64, "f64", 4, composite: direct);
scalar!(f32, "f32", 8, composite: widened);

/// `L` values computed together (one per row of a block).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(transparent)]
pub struct Lanes<T, const L: usize>(pub [T; L]);

/// A value a kernel body computes with for rows of `T`: `T` itself (one row) or
/// [`Lanes<T, L>`] (a block of rows).
pub trait Block<T: Real>: Ops {
    /// Rows in the block.
    const LANES: usize;
    /// The same value in every lane.
    fn splat(v: T) -> Self;
    /// Lane `l`.
    fn lane(&self, l: usize) -> T;
    /// Sets lane `l`.
    fn set_lane(&mut self, l: usize, v: T);
    /// `f` applied to every lane (for scalar work inside a block, e.g. a root-find).
    fn map(self, f: impl Fn(T) -> T) -> Self;
    /// A constant: `v` rounded to `T`, in every lane.
    #[inline(always)]
    fn c(v: f64) -> Self {
        Self::splat(T::from_f64(v))
    }
}

impl<T: Real> Block<T> for T {
    const LANES: usize = 1;
    #[inline(always)]
    fn splat(v: T) -> Self {
        v
    }
    #[inline(always)]
    fn lane(&self, _: usize) -> T {
        *self
    }
    #[inline(always)]
    fn set_lane(&mut self, _: usize, v: T) {
        *self = v;
    }
    #[inline(always)]
    fn map(self, f: impl Fn(T) -> T) -> Self {
        f(self)
    }
}

impl<T: Real, const L: usize> Block<T> for Lanes<T, L> {
    const LANES: usize = L;
    #[inline(always)]
    fn splat(v: T) -> Self {
        Lanes([v; L])
    }
    #[inline(always)]
    fn lane(&self, l: usize) -> T {
        self.0[l]
    }
    #[inline(always)]
    fn set_lane(&mut self, l: usize, v: T) {
        self.0[l] = v;
    }
    #[inline(always)]
    fn map(self, f: impl Fn(T) -> T) -> Self {
        let mut r = self;
        for l in 0..L {
            r.0[l] = f(self.0[l]);
        }
        r
    }
}

macro_rules! lane_binop {
    ($tr:ident, $m:ident, $op:tt) => {
        impl<T: Real, const L: usize> $tr for Lanes<T, L> {
            type Output = Self;
            #[inline(always)]
            fn $m(self, o: Self) -> Self {
                let mut r = self;
                for l in 0..L {
                    r.0[l] = self.0[l] $op o.0[l];
                }
                r
            }
        }
    };
}
lane_binop!(Add, add, +);
lane_binop!(Sub, sub, -);
lane_binop!(Mul, mul, *);
lane_binop!(Div, div, /);

impl<T: Real, const L: usize> Neg for Lanes<T, L> {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        let mut r = self;
        for l in 0..L {
            r.0[l] = -self.0[l];
        }
        r
    }
}

macro_rules! lane_unary {
    ($($m:ident),*) => {
        $(#[inline(always)]
        fn $m(self) -> Self {
            let mut r = self;
            for l in 0..L {
                r.0[l] = Ops::$m(self.0[l]);
            }
            r
        })*
    };
}

macro_rules! lane_binary {
    ($($m:ident),*) => {
        $(#[inline(always)]
        fn $m(self, o: Self) -> Self {
            let mut r = self;
            for l in 0..L {
                r.0[l] = Ops::$m(self.0[l], o.0[l]);
            }
            r
        })*
    };
}

impl<T: Real, const L: usize> Ops for Lanes<T, L> {
    lane_unary!(
        sqrt, cbrt, exp, expm1, log, log1p, sin, cos, tan, atan, sinh, cosh, tanh, asinh, acosh, atanh, sigmoid, logit, softplus, abs,
        sign, logcosh
    );
    lane_binary!(pow, hypot, powrecip);

    #[inline(always)]
    fn ifpos(self, then: impl FnOnce() -> Self, otherwise: impl FnOnce() -> Self) -> Self {
        let mut any = false;
        let mut all = true;
        for l in 0..L {
            let p = self.0[l] > T::ZERO;
            any |= p;
            all &= p;
        }
        if all {
            return then();
        }
        if !any {
            return otherwise();
        }
        let (a, b) = (then(), otherwise());
        let mut r = b;
        for l in 0..L {
            if self.0[l] > T::ZERO {
                r.0[l] = a.0[l];
            }
        }
        r
    }
}

/// `ifpos(c, then, otherwise)` on a block whose branches are functions of the values they
/// read (`a`, `b`), each available for the block (`*_block`) and for one row (`*_row`): when
/// every row takes one branch it is computed for the block; when the rows disagree, each row
/// computes only its own branch. The values are those of [`Ops::ifpos`].
#[inline(always)]
pub fn ifpos_split<T: Real, V: Block<T>, const K1: usize, const K2: usize>(
    c: V,
    a: [V; K1],
    then_block: impl FnOnce([V; K1]) -> V,
    then_row: impl Fn([T; K1]) -> T,
    b: [V; K2],
    else_block: impl FnOnce([V; K2]) -> V,
    else_row: impl Fn([T; K2]) -> T,
) -> V {
    let lanes = V::LANES;
    let positive = (0..lanes).filter(|l| c.lane(*l) > T::ZERO).count();
    if positive == lanes {
        return then_block(a);
    }
    if positive == 0 {
        return else_block(b);
    }
    let mut r = c;
    for l in 0..lanes {
        let v = if c.lane(l) > T::ZERO { then_row(a.map(|x| x.lane(l))) } else { else_row(b.map(|x| x.lane(l))) };
        r.set_lane(l, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_composites_round_once_from_f64() {
        let x = 0.3f32;
        assert_eq!(Ops::sigmoid(x), math::sigmoid(0.3f32 as f64) as f32);
        assert_eq!(Ops::exp(x), 0.3f32.exp());
    }

    #[test]
    fn ifpos_split_computes_each_rows_own_branch() {
        let c = Lanes([1.0, -1.0, 2.0, f64::NAN]);
        let x = Lanes([1.0, 2.0, 3.0, 4.0]);
        let r = ifpos_split(c, [x], |[a]| a * a, |[a]| a * a, [x], |[a]| -a, |[a]| -a);
        assert_eq!(r.0, [1.0, -2.0, 9.0, -4.0]);
        let all = ifpos_split(
            Lanes([1.0f64; 4]),
            [x],
            |[a]| a * a,
            |_| panic!("not per row"),
            [x],
            |_| panic!("not taken"),
            |_| panic!("not taken"),
        );
        assert_eq!(all.0, [1.0, 4.0, 9.0, 16.0]);
    }

    #[test]
    fn lanes_ifpos_selects_per_lane() {
        let c = Lanes([1.0, -1.0, f64::NAN, 0.0]);
        let r = c.ifpos(|| Lanes([10.0; 4]), || Lanes([20.0; 4]));
        assert_eq!(r.0, [10.0, 20.0, 20.0, 20.0]);
        let mut called = false;
        let r = Lanes([1.0f64; 4]).ifpos(
            || Lanes([1.0; 4]),
            || {
                called = true;
                Lanes([2.0; 4])
            },
        );
        assert_eq!(r.0, [1.0; 4]);
        assert!(!called, "a branch no lane takes is not evaluated");
    }
}
