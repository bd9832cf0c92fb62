//! Interval arithmetic over the op list: the domain facts behind guarded rewrites
//! and monotonicity proofs.
//!
//! An [`Interval`] is a range with open or closed ends (infinite ends are always open:
//! the values themselves are finite). An op whose result may be undefined on part of
//! its input (log of a negative number) returns its range on the defined part.
//!
//! ```
//! use flowc::ir::interval::Interval;
//! assert!(Interval::REAL.exp().is_positive());
//! assert_eq!(Interval::REAL.exp().to_string(), "(0, inf)");
//! ```

use super::op::Math;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
    pub lo_open: bool,
    pub hi_open: bool,
}

/// One end of an interval: value and whether it is excluded.
type End = (f64, bool);

/// Product of two ends; a closed zero times anything is a closed zero.
fn end_mul(a: End, b: End) -> End {
    if (a.0 == 0.0 && !a.1) || (b.0 == 0.0 && !b.1) {
        return (0.0, false);
    }
    if a.0 == 0.0 || b.0 == 0.0 {
        return (0.0, true);
    }
    (a.0 * b.0, a.1 || b.1)
}

impl Interval {
    pub const REAL: Interval = Interval { lo: f64::NEG_INFINITY, hi: f64::INFINITY, lo_open: true, hi_open: true };
    pub const POSITIVE: Interval = Interval { lo: 0.0, hi: f64::INFINITY, lo_open: true, hi_open: true };
    pub const UNIT: Interval = Interval { lo: 0.0, hi: 1.0, lo_open: true, hi_open: true };

    pub fn closed(lo: f64, hi: f64) -> Interval {
        Interval { lo, hi, lo_open: false, hi_open: false }.fix()
    }
    pub fn open(lo: f64, hi: f64) -> Interval {
        Interval { lo, hi, lo_open: true, hi_open: true }.fix()
    }
    pub fn point(v: f64) -> Interval {
        Interval::closed(v, v)
    }
    fn from_ends(lo: End, hi: End) -> Interval {
        Interval { lo: lo.0, lo_open: lo.1, hi: hi.0, hi_open: hi.1 }.fix()
    }
    fn fix(mut self) -> Interval {
        if self.lo.is_nan() {
            self.lo = f64::NEG_INFINITY;
        }
        if self.hi.is_nan() {
            self.hi = f64::INFINITY;
        }
        if self.lo.is_infinite() {
            self.lo_open = true;
        }
        if self.hi.is_infinite() {
            self.hi_open = true;
        }
        self
    }
    fn lo_end(&self) -> End {
        (self.lo, self.lo_open)
    }
    fn hi_end(&self) -> End {
        (self.hi, self.hi_open)
    }
    pub fn is_positive(&self) -> bool {
        self.lo > 0.0 || (self.lo == 0.0 && self.lo_open)
    }
    pub fn is_negative(&self) -> bool {
        self.hi < 0.0 || (self.hi == 0.0 && self.hi_open)
    }
    pub fn is_nonneg(&self) -> bool {
        self.lo >= 0.0
    }
    pub fn is_nonpos(&self) -> bool {
        self.hi <= 0.0
    }
    pub fn excludes_zero(&self) -> bool {
        self.is_positive() || self.is_negative()
    }
    pub fn contains(&self, v: f64) -> bool {
        let above = v > self.lo || (v == self.lo && !self.lo_open);
        let below = v < self.hi || (v == self.hi && !self.hi_open);
        above && below
    }
    /// The smallest interval containing both.
    pub fn join(&self, o: &Interval) -> Interval {
        let lo = if self.lo < o.lo {
            self.lo_end()
        } else if o.lo < self.lo {
            o.lo_end()
        } else {
            (self.lo, self.lo_open && o.lo_open)
        };
        let hi = if self.hi > o.hi {
            self.hi_end()
        } else if o.hi > self.hi {
            o.hi_end()
        } else {
            (self.hi, self.hi_open && o.hi_open)
        };
        Interval::from_ends(lo, hi)
    }

    /// Intersection (both facts hold); used to merge facts of equal e-classes.
    pub fn meet(&self, o: &Interval) -> Interval {
        let lo = if self.lo > o.lo {
            self.lo_end()
        } else if o.lo > self.lo {
            o.lo_end()
        } else {
            (self.lo, self.lo_open || o.lo_open)
        };
        let hi = if self.hi < o.hi {
            self.hi_end()
        } else if o.hi < self.hi {
            o.hi_end()
        } else {
            (self.hi, self.hi_open || o.hi_open)
        };
        if lo.0 > hi.0 {
            // contradictory facts (an undefined branch): keep the first
            return *self;
        }
        Interval::from_ends(lo, hi)
    }
    /// Image under a strictly increasing function.
    fn inc(&self, f: impl Fn(f64) -> f64) -> Interval {
        Interval { lo: f(self.lo), hi: f(self.hi), lo_open: self.lo_open, hi_open: self.hi_open }.fix()
    }
    /// The part of `self` inside [lo, hi] (with the given openness of the limits).
    fn clamp(&self, lo: End, hi: End) -> Interval {
        Interval::from_ends(lo, hi).meet(self)
    }
    pub fn neg(&self) -> Interval {
        Interval { lo: -self.hi, hi: -self.lo, lo_open: self.hi_open, hi_open: self.lo_open }
    }
    pub fn add(&self, o: &Interval) -> Interval {
        Interval { lo: self.lo + o.lo, hi: self.hi + o.hi, lo_open: self.lo_open || o.lo_open, hi_open: self.hi_open || o.hi_open }.fix()
    }
    pub fn sub(&self, o: &Interval) -> Interval {
        self.add(&o.neg())
    }
    pub fn mul(&self, o: &Interval) -> Interval {
        let c = [
            end_mul(self.lo_end(), o.lo_end()),
            end_mul(self.lo_end(), o.hi_end()),
            end_mul(self.hi_end(), o.lo_end()),
            end_mul(self.hi_end(), o.hi_end()),
        ];
        let lo = c.iter().map(|e| e.0).fold(f64::INFINITY, f64::min);
        let hi = c.iter().map(|e| e.0).fold(f64::NEG_INFINITY, f64::max);
        let lo_open = c.iter().filter(|e| e.0 == lo).all(|e| e.1);
        let hi_open = c.iter().filter(|e| e.0 == hi).all(|e| e.1);
        Interval { lo, hi, lo_open, hi_open }.fix()
    }
    /// 1/a on the part where it is defined (a zero end is excluded: 1/0 is not a number).
    pub fn recip(&self) -> Interval {
        let mut s = *self;
        if s.lo == 0.0 {
            s.lo_open = true;
        }
        if s.hi == 0.0 {
            s.hi_open = true;
        }
        s.recip_nonzero()
    }
    fn recip_nonzero(&self) -> Interval {
        if self.excludes_zero() {
            let r = |e: End| -> End {
                if e.0 == 0.0 {
                    (if e.0.is_sign_negative() || self.is_negative() { f64::NEG_INFINITY } else { f64::INFINITY }, true)
                } else {
                    (1.0 / e.0, e.1)
                }
            };
            let (a, b) = (r(self.hi_end()), r(self.lo_end()));
            Interval::from_ends(a, b)
        } else {
            Interval::REAL
        }
    }
    pub fn div(&self, o: &Interval) -> Interval {
        self.mul(&o.recip())
    }
    pub fn exp(&self) -> Interval {
        self.inc(f64::exp).meet(&Interval::POSITIVE)
    }
    pub fn abs(&self) -> Interval {
        if self.lo >= 0.0 {
            *self
        } else if self.hi <= 0.0 {
            self.neg()
        } else {
            let hi = if -self.lo > self.hi {
                (-self.lo, self.lo_open)
            } else if self.hi > -self.lo {
                self.hi_end()
            } else {
                (self.hi, self.hi_open && self.lo_open)
            };
            Interval::from_ends((0.0, false), hi)
        }
    }
    /// Image under an even function increasing in |a|.
    fn even(&self, f: impl Fn(f64) -> f64) -> Interval {
        self.abs().inc(f)
    }
    fn pow(&self, o: &Interval) -> Interval {
        if o.lo == o.hi && o.lo.fract() == 0.0 && o.lo.abs() < 1e9 {
            let n = o.lo;
            if n == 0.0 {
                return Interval::point(1.0);
            }
            if n < 0.0 {
                return self.pow(&Interval::point(-n)).recip();
            }
            let p = |v: f64| v.powf(n);
            return if (n / 2.0).fract() == 0.0 { self.even(p) } else { self.inc(p) };
        }
        if self.is_nonneg() {
            // a^b = exp(b log a)
            let l = self.clamp((0.0, false), (f64::INFINITY, true)).inc(f64::ln);
            let r = l.mul(o).exp();
            return if self.is_positive() { r } else { Interval::from_ends((0.0, false), r.hi_end()) };
        }
        Interval::REAL
    }

    /// Range of sin: the values at the ends, widened to ±1 when a peak lies inside.
    fn sin(&self) -> Interval {
        use std::f64::consts::{FRAC_PI_2, PI};
        let full = Interval::closed(-1.0, 1.0);
        if !self.lo.is_finite() || !self.hi.is_finite() || self.hi - self.lo >= 2.0 * PI || self.lo.abs() > 1e6 {
            return full;
        }
        let (a, b) = (self.lo.sin(), self.hi.sin());
        let mut lo: End = if a < b {
            (a, self.lo_open)
        } else if b < a {
            (b, self.hi_open)
        } else {
            (a, self.lo_open && self.hi_open)
        };
        let mut hi: End = if a > b {
            (a, self.lo_open)
        } else if b > a {
            (b, self.hi_open)
        } else {
            (a, self.lo_open && self.hi_open)
        };
        // peaks at pi/2 + 2k pi, troughs at -pi/2 + 2k pi
        let has = |c: f64| {
            let k = ((self.lo - c) / (2.0 * PI)).ceil();
            let t = c + 2.0 * PI * k;
            t > self.lo && t < self.hi
        };
        if has(FRAC_PI_2) {
            hi = (1.0, false);
        }
        if has(-FRAC_PI_2) {
            lo = (-1.0, false);
        }
        // the ends are rounded: widen by an ulp-sized margin unless the value is an exact zero end
        let m = 4.0 * f64::EPSILON;
        if lo.0 != 0.0 || !lo.1 {
            lo.0 -= m;
        }
        if hi.0 != 0.0 || !hi.1 {
            hi.0 += m;
        }
        Interval::from_ends(lo, hi).meet(&full)
    }

    /// The range of one op applied to argument ranges.
    pub fn apply(node: &Math, args: &[Interval]) -> Interval {
        let a = args.first().unwrap_or(&Interval::REAL);
        let b = args.get(1).unwrap_or(&Interval::REAL);
        use super::eval::{logcosh, logit, sigmoid, softplus};
        use std::f64::consts::FRAC_PI_2;
        let nonneg = ((0.0, false), (f64::INFINITY, true));
        match node {
            Math::Add(_) => a.add(b),
            Math::Sub(_) => a.sub(b),
            Math::Mul(_) => a.mul(b),
            Math::Div(_) => a.div(b),
            Math::Neg(_) => a.neg(),
            Math::Pow(_) => a.pow(b),
            Math::Sqrt(_) => a.clamp(nonneg.0, nonneg.1).inc(f64::sqrt),
            Math::Cbrt(_) => a.inc(f64::cbrt),
            Math::Exp(_) => a.exp(),
            Math::Expm1(_) => a.inc(f64::exp_m1).meet(&Interval::open(-1.0, f64::INFINITY)),
            Math::Log(_) => a.clamp(nonneg.0, nonneg.1).inc(f64::ln),
            Math::Log1p(_) => a.clamp((-1.0, false), (f64::INFINITY, true)).inc(f64::ln_1p),
            Math::Sin(_) => a.sin(),
            Math::Cos(_) => a.add(&Interval::point(std::f64::consts::FRAC_PI_2)).sin(),
            Math::Tan(_) => Interval::REAL,
            Math::Atan(_) => a.inc(f64::atan).meet(&Interval::open(-FRAC_PI_2, FRAC_PI_2)),
            Math::Sinh(_) => a.inc(f64::sinh),
            Math::Cosh(_) => a.even(f64::cosh).meet(&Interval { lo: 1.0, hi: f64::INFINITY, lo_open: false, hi_open: true }),
            Math::Tanh(_) => a.inc(f64::tanh).meet(&Interval::open(-1.0, 1.0)),
            Math::Asinh(_) => a.inc(f64::asinh),
            Math::Acosh(_) => a.clamp((1.0, false), (f64::INFINITY, true)).inc(f64::acosh),
            Math::Atanh(_) => a.clamp((-1.0, true), (1.0, true)).inc(f64::atanh),
            Math::Sigmoid(_) => a.inc(sigmoid).meet(&Interval::UNIT),
            Math::Logit(_) => a.clamp((0.0, true), (1.0, true)).inc(logit),
            Math::Softplus(_) => a.inc(softplus).meet(&Interval::POSITIVE),
            Math::Abs(_) => a.abs(),
            Math::Sign(_) => {
                if a.is_positive() {
                    Interval::point(1.0)
                } else if a.is_negative() {
                    Interval::point(-1.0)
                } else {
                    Interval::closed(if a.lo < 0.0 { -1.0 } else { 0.0 }, if a.hi > 0.0 { 1.0 } else { 0.0 })
                }
            }
            Math::LogCosh(_) => a.even(logcosh),
            Math::Hypot(_) => {
                let (x, y) = (a.abs(), b.abs());
                Interval::from_ends((x.lo.hypot(y.lo), x.lo_open && y.lo_open), (x.hi.hypot(y.hi), x.hi_open || y.hi_open))
            }
            Math::IfPos(_) => b.join(&args[2]),
            Math::PowRecip(_) => a.pow(&b.recip()),
            Math::Solve(_) | Math::Sym(_) => Interval::REAL,
            Math::Num(c) => Interval::point(c.get()),
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = |v: f64| {
            if v == f64::INFINITY {
                "inf".to_string()
            } else if v == f64::NEG_INFINITY {
                "-inf".to_string()
            } else {
                format!("{v}")
            }
        };
        write!(f, "{}{}, {}{}", if self.lo_open { "(" } else { "[" }, b(self.lo), b(self.hi), if self.hi_open { ")" } else { "]" })
    }
}
