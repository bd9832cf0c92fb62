//! Rewrite rules, as tables. Each family is a function returning `Vec<Rewrite>`; each rule
//! has a unique kebab-case name and a comment stating the identity and its domain. Side
//! conditions read the interval analysis (`analysis.rs`), never the shape of the graph.

use super::analysis::{Domains, Graph};
use crate::ir::op::Math;
use egg::{rewrite as rw, Id, Rewrite, Subst, Var};

pub type Rule = Rewrite<Math, Domains>;

fn var(v: &str) -> Var {
    v.parse().expect("pattern variable")
}

/// `?v` does not depend on x.
fn no_x(v: &str) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    let v = var(v);
    move |g, _, s| !g[s[v]].data.has_x
}
/// `?v` > 0 on the whole domain.
fn pos(v: &str) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    let v = var(v);
    move |g, _, s| g[s[v]].data.range.is_positive()
}
/// `?v` >= 0 on the whole domain.
fn nonneg(v: &str) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    let v = var(v);
    move |g, _, s| g[s[v]].data.range.is_nonneg()
}
/// `?v` <= 0 on the whole domain.
fn nonpos(v: &str) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    let v = var(v);
    move |g, _, s| g[s[v]].data.range.is_nonpos()
}
/// `?v` != 0 on the whole domain.
fn nonzero(v: &str) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    let v = var(v);
    move |g, _, s| g[s[v]].data.range.excludes_zero()
}
/// `?v` < 0 on the whole domain.
fn negative(v: &str) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    let v = var(v);
    move |g, _, s| g[s[v]].data.range.is_negative()
}
/// `?v` lies in [lo, hi] on the whole domain.
fn within(v: &str, lo: f64, hi: f64) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    let v = var(v);
    move |g, _, s| {
        let r = g[s[v]].data.range;
        r.lo >= lo && r.hi <= hi
    }
}
/// `?a` does not depend on x and is > 0.
fn no_x_pos(v: &str) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    let (a, b) = (no_x(v), pos(v));
    move |g, id, s| a(g, id, s) && b(g, id, s)
}
/// `?a` does not depend on x and is != 0.
fn no_x_nonzero(v: &str) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    let (a, b) = (no_x(v), nonzero(v));
    move |g, id, s| a(g, id, s) && b(g, id, s)
}
/// `?v` is an odd integer constant.
fn odd_int(v: &str) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    let v = var(v);
    move |g, _, s| matches!(g[s[v]].data.constant, Some(c) if c.fract() == 0.0 && (c / 2.0).fract() != 0.0)
}

/// Field arithmetic: identities, commutativity, limited association, sign moves.
#[rustfmt::skip]
pub fn algebra() -> Vec<Rule> {
    vec![
        rw!("add-comm";       "(+ ?a ?b)"            => "(+ ?b ?a)"),                 // ;; a + b = b + a
        // ;; c (a t - b) - d = (c a) t - (c b + d), a b c d free of x: nested affine maps of one
        // ;; term (a chain of layers) become one affine map, whose coefficients are hoisted
        rw!("affine-compose"; "(- (* ?c (- (* ?a ?t) ?b)) ?d)" => "(- (* (* ?c ?a) ?t) (+ (* ?c ?b) ?d))" if no_x("?a") if no_x("?b") if no_x("?c") if no_x("?d")),
        // ;; (e + (f + t)/g)/d = ((e g + f) + t)/(g d), e f g d free of x (the inverse chain)
        rw!("affine-compose-div"; "(/ (+ ?e (/ (+ ?f ?t) ?g)) ?d)" => "(/ (+ (+ (* ?e ?g) ?f) ?t) (* ?g ?d))" if no_x("?e") if no_x("?f") if no_x("?g") if no_x("?d")),
        rw!("mul-comm";       "(* ?a ?b)"            => "(* ?b ?a)"),                 // ;; a b = b a
        rw!("add-zero";       "(+ ?a 0)"             => "?a"),                        // ;; a + 0 = a
        rw!("mul-one";        "(* ?a 1)"             => "?a"),                        // ;; a 1 = a
        rw!("mul-zero";       "(* ?a 0)"             => "0"),                         // ;; a 0 = 0, finite a
        rw!("sub-zero";       "(- ?a 0)"             => "?a"),                        // ;; a - 0 = a
        rw!("zero-sub";       "(- 0 ?a)"             => "(neg ?a)"),                  // ;; 0 - a = -a
        rw!("sub-self";       "(- ?a ?a)"            => "0"),                         // ;; a - a = 0, finite a
        rw!("div-one";        "(/ ?a 1)"             => "?a"),                        // ;; a / 1 = a
        rw!("div-self";       "(/ ?a ?a)"            => "1" if nonzero("?a")),        // ;; a / a = 1, a != 0
        rw!("neg-neg";        "(neg (neg ?a))"       => "?a"),                        // ;; --a = a
        rw!("add-neg";        "(+ ?a (neg ?b))"      => "(- ?a ?b)"),                 // ;; a + (-b) = a - b
        rw!("mul-minus-one";  "(* -1 ?a)"            => "(neg ?a)"),                  // ;; (-1) a = -a
        rw!("mul-neg";        "(* ?a (neg ?b))"      => "(neg (* ?a ?b))"),           // ;; a (-b) = -(a b)
        rw!("div-neg";        "(/ (neg ?a) ?b)"      => "(neg (/ ?a ?b))"),           // ;; (-a)/b = -(a/b)
        rw!("sub-neg";        "(- ?a (neg ?b))"      => "(+ ?a ?b)"),                 // ;; a - (-b) = a + b
        rw!("neg-sub";        "(neg (- ?a ?b))"      => "(- ?b ?a)"),                 // ;; -(a - b) = b - a
        rw!("sub-add-cancel"; "(- (+ ?a ?b) ?b)"     => "?a"),                        // ;; (a + b) - b = a
        rw!("add-sub-cancel"; "(+ (- ?a ?b) ?b)"     => "?a"),                        // ;; (a - b) + b = a
        rw!("div-mul-cancel"; "(/ (* ?a ?b) ?b)"     => "?a" if nonzero("?b")),       // ;; (a b)/b = a, b != 0
        rw!("mul-div-cancel"; "(* (/ ?a ?b) ?b)"     => "?a" if nonzero("?b")),       // ;; (a/b) b = a, b != 0
        rw!("div-div";        "(/ (/ ?a ?b) ?c)"     => "(/ ?a (* ?b ?c))"),          // ;; (a/b)/c = a/(b c)
        rw!("mul-div";        "(* ?a (/ ?b ?c))"     => "(/ (* ?a ?b) ?c)"),          // ;; a (b/c) = (a b)/c
        rw!("recip-div";      "(/ 1 (/ ?a ?b))"      => "(/ ?b ?a)" if nonzero("?a")),// ;; 1/(a/b) = b/a, a != 0
        rw!("square-pow";     "(* ?a ?a)"            => "(pow ?a 2)"),                // ;; a a = a^2
        rw!("sub-frac";       "(- ?c (/ ?a ?b))"     => "(/ (- (* ?c ?b) ?a) ?b)" if nonzero("?b")), // ;; c - a/b = (c b - a)/b, b != 0
        rw!("add-sub-cancel-l"; "(- (+ ?a ?b) ?a)"   => "?b"),                        // ;; (a + b) - a = b
        rw!("ifpos-same";     "(ifpos ?c ?a ?a)"     => "?a"),                        // ;; (c > 0 ? a : a) = a
        rw!("double";         "(+ ?a ?a)"            => "(* 2 ?a)"),                  // ;; a + a = 2a
    ]
}

/// Powers, roots, absolute value and sign.
#[rustfmt::skip]
pub fn powers() -> Vec<Rule> {
    vec![
        rw!("pow-one";        "(pow ?a 1)"           => "?a"),                        // ;; a^1 = a
        rw!("pow-two";        "(pow ?a 2)"           => "(* ?a ?a)"),                 // ;; a^2 = a a
        rw!("pow-three";      "(pow ?a 3)"           => "(* ?a (* ?a ?a))"),          // ;; a^3 = a a a
        rw!("pow-half";       "(pow ?a 0.5)"         => "(sqrt ?a)" if nonneg("?a")), // ;; a^(1/2) = sqrt a, a >= 0
        rw!("pow-pow";        "(pow (pow ?a ?b) ?c)" => "(pow ?a (* ?b ?c))" if pos("?a")), // ;; (a^b)^c = a^(b c), a > 0
        rw!("pow-mul";        "(* (pow ?a ?b) (pow ?a ?c))" => "(pow ?a (+ ?b ?c))" if pos("?a")), // ;; a^b a^c = a^(b+c), a > 0
        rw!("pow-recip-op";   "(pow ?a (/ 1 ?d))"    => "(powrecip ?a ?d)" if pos("?a")), // ;; a^(1/d) = powrecip(a, d), a > 0
        rw!("powrecip-def";   "(powrecip ?a ?d)"     => "(pow ?a (/ 1 ?d))"),         // ;; powrecip(a, d) = a^(1/d)
        rw!("pow-recip";      "(/ 1 (pow ?a ?b))"    => "(pow ?a (neg ?b))" if pos("?a")), // ;; 1/a^b = a^-b, a > 0
        rw!("sqrt-square";    "(sqrt (* ?a ?a))"     => "(abs ?a)"),                  // ;; sqrt(a^2) = |a|
        rw!("square-sqrt";    "(* (sqrt ?a) (sqrt ?a))" => "?a" if nonneg("?a")),     // ;; sqrt(a)^2 = a, a >= 0
        rw!("cbrt-cube";      "(cbrt (* ?a (* ?a ?a)))" => "?a"),                     // ;; cbrt(a^3) = a
        rw!("abs-nonneg";     "(abs ?a)"             => "?a" if nonneg("?a")),        // ;; |a| = a, a >= 0
        rw!("abs-nonpos";     "(abs ?a)"             => "(neg ?a)" if nonpos("?a")),  // ;; |a| = -a, a <= 0
        rw!("abs-neg";        "(abs (neg ?a))"       => "(abs ?a)"),                  // ;; |-a| = |a|
        rw!("abs-mul";        "(abs (* ?a ?b))"      => "(* (abs ?a) (abs ?b))"),     // ;; |a b| = |a| |b|
        rw!("abs-div";        "(abs (/ ?a ?b))"      => "(/ (abs ?a) (abs ?b))"),     // ;; |a/b| = |a|/|b|
        rw!("hypot-def";      "(sqrt (+ (* ?a ?a) (* ?b ?b)))" => "(hypot ?a ?b)"),    // ;; sqrt(a^2 + b^2) = hypot(a, b)
        rw!("hypot1-def";     "(sqrt (+ 1 (* ?a ?a)))" => "(hypot 1 ?a)"),            // ;; sqrt(1 + a^2) = hypot(1, a)
        rw!("hypot-comm";     "(hypot ?a ?b)"        => "(hypot ?b ?a)"),             // ;; hypot(a, b) = hypot(b, a)
        rw!("mul-sign";       "(* ?a (sign ?a))"     => "(abs ?a)"),                  // ;; a sign(a) = |a|
        rw!("sign-pos";       "(sign ?a)"            => "1" if pos("?a")),            // ;; sign(a) = 1, a > 0
        rw!("sign-neg";       "(sign ?a)"            => "-1" if negative("?a")),      // ;; sign(a) = -1, a < 0
    ]
}

/// Exponentials and logarithms.
#[rustfmt::skip]
pub fn exp_log() -> Vec<Rule> {
    vec![
        rw!("log-exp";        "(log (exp ?a))"       => "?a"),                        // ;; log(e^a) = a
        rw!("exp-log";        "(exp (log ?a))"       => "?a" if pos("?a")),           // ;; e^(log a) = a, a > 0
        rw!("log-mul";        "(log (* ?a ?b))"      => "(+ (log ?a) (log ?b))" if nonneg("?a") if nonneg("?b")), // ;; log(a b) = log a + log b, a, b >= 0 (both -inf at 0)
        rw!("log-div";        "(log (/ ?a ?b))"      => "(- (log ?a) (log ?b))" if pos("?a") if pos("?b")), // ;; log(a/b) = log a - log b, a, b > 0
        rw!("log-recip";      "(log (/ 1 ?a))"       => "(neg (log ?a))" if pos("?a")), // ;; log(1/a) = -log a, a > 0
        rw!("log-pow";        "(log (pow ?a ?b))"    => "(* ?b (log ?a))" if pos("?a")), // ;; log(a^b) = b log a, a > 0
        rw!("log-sqrt";       "(log (sqrt ?a))"      => "(* 0.5 (log ?a))" if pos("?a")), // ;; log sqrt a = log(a)/2, a > 0
        rw!("log-cbrt";       "(log (cbrt ?a))"      => "(/ (log ?a) 3)" if pos("?a")), // ;; log cbrt a = log(a)/3, a > 0
        rw!("log-abs-mul";    "(log (abs (* ?a ?b)))" => "(+ (log (abs ?a)) (log (abs ?b)))"), // ;; log|ab| = log|a| + log|b| (both -inf when a factor is 0)
        rw!("log-abs-intro";  "(log ?a)"             => "(log (abs ?a))" if nonneg("?a")), // ;; log a = log|a|, a >= 0
        rw!("log-abs-div";    "(log (abs (/ ?a ?b)))" => "(- (log (abs ?a)) (log (abs ?b)))" if nonzero("?a") if nonzero("?b")), // ;; log|a/b| = log|a| - log|b|
        rw!("log-sq";         "(log (* ?a ?a))"      => "(* 2 (log (abs ?a)))"),      // ;; log(a^2) = 2 log|a| (both -inf at 0)
        rw!("log-one";        "(log 1)"              => "0"),                         // ;; log 1 = 0
        rw!("exp-zero";       "(exp 0)"              => "1"),                         // ;; e^0 = 1
        rw!("exp-mul-exp";    "(* (exp ?a) (exp ?b))" => "(exp (+ ?a ?b))"),          // ;; e^a e^b = e^(a+b)
        rw!("exp-neg";        "(exp (neg ?a))"       => "(/ 1 (exp ?a))"),            // ;; e^-a = 1/e^a
        rw!("recip-exp";      "(/ 1 (exp ?a))"       => "(exp (neg ?a))"),            // ;; 1/e^a = e^-a
        rw!("div-exp";        "(/ ?b (exp ?a))"      => "(* ?b (exp (neg ?a)))"),     // ;; b/e^a = b e^-a
        rw!("log1p-def";      "(log (+ 1 ?a))"       => "(log1p ?a)"),                // ;; log(1 + a) = log1p(a), a > -1
        rw!("log1p-def-r";    "(log (+ ?a 1))"       => "(log1p ?a)"),                // ;; log(a + 1) = log1p(a), a > -1
        rw!("log-one-minus";  "(log (- 1 ?a))"       => "(log1p (neg ?a))"),          // ;; log(1 - a) = log1p(-a), a < 1
        rw!("expm1-def";      "(- (exp ?a) 1)"       => "(expm1 ?a)"),                // ;; e^a - 1 = expm1(a)
        rw!("one-minus-exp";  "(- 1 (exp ?a))"       => "(neg (expm1 ?a))"),          // ;; 1 - e^a = -expm1(a)
        rw!("log1p-expm1";    "(log1p (expm1 ?a))"   => "?a"),                        // ;; log1p(expm1 a) = a
        rw!("expm1-log1p";    "(expm1 (log1p ?a))"   => "?a"),                        // ;; expm1(log1p a) = a, a > -1
        rw!("log-e";          "(log e)"              => "1"),                         // ;; log e = 1
    ]
}

/// Hyperbolic and trigonometric identities.
#[rustfmt::skip]
pub fn hyperbolic() -> Vec<Rule> {
    vec![
        rw!("sinh-def";       "(- (exp ?a) (exp (neg ?a)))" => "(* 2 (sinh ?a))"),    // ;; e^a - e^-a = 2 sinh a
        rw!("cosh-def";       "(+ (exp ?a) (exp (neg ?a)))" => "(* 2 (cosh ?a))"),    // ;; e^a + e^-a = 2 cosh a
        rw!("tanh-def";       "(/ (sinh ?a) (cosh ?a))" => "(tanh ?a)"),              // ;; sinh a / cosh a = tanh a
        rw!("asinh-sinh";     "(asinh (sinh ?a))"    => "?a"),                        // ;; asinh(sinh a) = a
        rw!("sinh-asinh";     "(sinh (asinh ?a))"    => "?a"),                        // ;; sinh(asinh a) = a
        rw!("atanh-tanh";     "(atanh (tanh ?a))"    => "?a"),                        // ;; atanh(tanh a) = a
        rw!("tanh-atanh";     "(tanh (atanh ?a))"    => "?a"),                        // ;; tanh(atanh a) = a, |a| < 1
        rw!("acosh-cosh";     "(acosh (cosh ?a))"    => "?a" if nonneg("?a")),        // ;; acosh(cosh a) = a, a >= 0
        rw!("cosh-acosh";     "(cosh (acosh ?a))"    => "?a"),                        // ;; cosh(acosh a) = a, a >= 1
        rw!("cosh-asinh";     "(cosh (asinh ?a))"    => "(sqrt (+ 1 (* ?a ?a)))"),    // ;; cosh(asinh a) = sqrt(1 + a^2)
        rw!("hypot1-cosh";    "(sqrt (+ 1 (* ?a ?a)))" => "(cosh (asinh ?a))"),       // ;; sqrt(1 + a^2) = cosh(asinh a)
        rw!("tanh-asinh";     "(/ ?a (sqrt (+ 1 (* ?a ?a))))" => "(tanh (asinh ?a))"),// ;; a / sqrt(1 + a^2) = tanh(asinh a)
        rw!("asinh-log";      "(log (+ ?a (sqrt (+ (* ?a ?a) 1))))" => "(asinh ?a)"), // ;; log(a + sqrt(a^2 + 1)) = asinh a
        rw!("asinh-log-r";    "(log (+ ?a (sqrt (+ 1 (* ?a ?a)))))" => "(asinh ?a)"), // ;; log(a + sqrt(1 + a^2)) = asinh a
        rw!("sech2";          "(- 1 (* (tanh ?a) (tanh ?a)))" => "(/ 1 (* (cosh ?a) (cosh ?a)))"), // ;; 1 - tanh^2 a = 1/cosh^2 a
        rw!("cosh2";          "(+ 1 (* (sinh ?a) (sinh ?a)))" => "(* (cosh ?a) (cosh ?a))"),       // ;; 1 + sinh^2 a = cosh^2 a
        rw!("cosh-neg";       "(cosh (neg ?a))"      => "(cosh ?a)"),                 // ;; cosh(-a) = cosh a
        rw!("sinh-neg";       "(sinh (neg ?a))"      => "(neg (sinh ?a))"),           // ;; sinh(-a) = -sinh a
        rw!("tanh-neg";       "(tanh (neg ?a))"      => "(neg (tanh ?a))"),           // ;; tanh(-a) = -tanh a
        rw!("asinh-neg";      "(asinh (neg ?a))"     => "(neg (asinh ?a))"),          // ;; asinh(-a) = -asinh a
        rw!("atanh-neg";      "(atanh (neg ?a))"     => "(neg (atanh ?a))"),          // ;; atanh(-a) = -atanh a
        rw!("atan-tan";       "(atan (tan ?a))"      => "?a" if within("?a", -std::f64::consts::FRAC_PI_2, std::f64::consts::FRAC_PI_2)), // ;; atan(tan a) = a, |a| < pi/2
        rw!("tan-atan";       "(tan (atan ?a))"      => "?a"),                        // ;; tan(atan a) = a
        rw!("cos-shift";      "(cos (* pi (- ?a 0.5)))" => "(sin (* pi ?a))"),        // ;; cos(pi a - pi/2) = sin(pi a)
        rw!("tan-shift";      "(tan (* pi (- ?a 0.5)))" => "(neg (/ 1 (tan (* pi ?a))))"), // ;; tan(pi a - pi/2) = -1/tan(pi a)
        rw!("tan-def";        "(/ (sin ?a) (cos ?a))" => "(tan ?a)"),                 // ;; sin a / cos a = tan a
        rw!("pythagoras";     "(+ (* (sin ?a) (sin ?a)) (* (cos ?a) (cos ?a)))" => "1"), // ;; sin^2 + cos^2 = 1
        rw!("cos-neg";        "(cos (neg ?a))"       => "(cos ?a)"),                  // ;; cos(-a) = cos a
        rw!("sin-neg";        "(sin (neg ?a))"       => "(neg (sin ?a))"),            // ;; sin(-a) = -sin a
        rw!("atan-neg";       "(atan (neg ?a))"      => "(neg (atan ?a))"),           // ;; atan(-a) = -atan a
        rw!("logcosh-def";    "(log (cosh ?a))"      => "(logcosh ?a)"),              // ;; log cosh a = logcosh a
        rw!("logcosh-neg";    "(logcosh (neg ?a))"   => "(logcosh ?a)"),              // ;; logcosh(-a) = logcosh a
        rw!("logcosh-abs";    "(logcosh (abs ?a))"   => "(logcosh ?a)"),              // ;; logcosh|a| = logcosh a
    ]
}

/// Sigmoid, logit and softplus.
#[rustfmt::skip]
pub fn neural() -> Vec<Rule> {
    vec![
        rw!("sigmoid-def";    "(/ 1 (+ 1 (exp (neg ?a))))" => "(sigmoid ?a)"),        // ;; 1/(1 + e^-a) = sigmoid a
        rw!("sigmoid-def-2";  "(/ (exp ?a) (+ 1 (exp ?a)))" => "(sigmoid ?a)"),       // ;; e^a/(1 + e^a) = sigmoid a
        rw!("sigmoid-compl";  "(- 1 (sigmoid ?a))"   => "(sigmoid (neg ?a))"),        // ;; 1 - sigmoid a = sigmoid(-a)
        rw!("logit-sigmoid";  "(logit (sigmoid ?a))" => "?a"),                        // ;; logit(sigmoid a) = a
        rw!("sigmoid-logit";  "(sigmoid (logit ?a))" => "?a"),                        // ;; sigmoid(logit a) = a, 0 < a < 1
        rw!("log-sigmoid";    "(log (sigmoid ?a))"   => "(neg (softplus (neg ?a)))"), // ;; log sigmoid a = -softplus(-a)
        rw!("softplus-def";   "(log (+ 1 (exp ?a)))" => "(softplus ?a)"),             // ;; log(1 + e^a) = softplus a
        rw!("softplus-def-2"; "(log1p (exp ?a))"     => "(softplus ?a)"),             // ;; log1p(e^a) = softplus a
        rw!("softplus-sym";   "(- (softplus ?a) (softplus (neg ?a)))" => "?a"),       // ;; softplus a - softplus(-a) = a
        rw!("logit-def";      "(log (/ ?a (- 1 ?a)))" => "(logit ?a)"),               // ;; log(a/(1-a)) = logit a, 0 < a < 1
    ]
}

/// Candidate forms for accuracy (Herbie-style): each is an identity, the choice between
/// forms is made by measured error in `stability.rs`.
#[rustfmt::skip]
pub fn stability() -> Vec<Rule> {
    vec![
        // ;; sinh(d asinh(a) - e) = (e^-e w^(s d) - e^e w^(-s d))/2, w = |a| + hypot(1, a), s = sign a
        // ;; (e^(asinh a) = w^s): no exponential of a large computed argument
        rw!("sinh-asinh-pow"; "(sinh (- (* ?d (asinh ?a)) ?e))" => "(* 0.5 (- (* (exp (neg ?e)) (pow (+ (abs ?a) (hypot 1 ?a)) (* (sign ?a) ?d))) (* (exp ?e) (pow (+ (abs ?a) (hypot 1 ?a)) (neg (* (sign ?a) ?d))))))"),
        // ;; sinh((e + asinh a)/d) = (e^(e/d) w^(s/d) - e^(-e/d) w^(-s/d))/2, w and s as above, d != 0
        rw!("sinh-asinh-pow-div"; "(sinh (/ (+ ?e (asinh ?a)) ?d))" => "(* 0.5 (- (* (exp (/ ?e ?d)) (powrecip (+ (abs ?a) (hypot 1 ?a)) (* (sign ?a) ?d))) (* (exp (neg (/ ?e ?d))) (powrecip (+ (abs ?a) (hypot 1 ?a)) (neg (* (sign ?a) ?d))))))" if nonzero("?d")),
        rw!("log1p-large";    "(log1p ?b)"           => "(+ (log ?b) (log1p (/ 1 ?b)))" if nonneg("?b")), // ;; log1p(b) = log b + log1p(1/b), b > 0 (measured where b = 0)
        rw!("log-sech2";      "(log (- 1 (* (tanh ?a) (tanh ?a))))" => "(* 2 (- (- (log 2) ?a) (softplus (* -2 ?a))))"), // ;; log(1 - tanh^2 a) = 2(log 2 - a - softplus(-2a))
        rw!("log-one-minus-sigmoid"; "(log (- 1 (sigmoid ?a)))" => "(neg (softplus ?a))"), // ;; log(1 - sigmoid a) = -softplus a
        rw!("log-hypot1";     "(log (sqrt (+ 1 (* ?a ?a))))" => "(logcosh (asinh ?a))"), // ;; log sqrt(1 + a^2) = logcosh(asinh a)
        rw!("log-1p-sq";      "(log (+ 1 (* ?a ?a)))" => "(* 2 (logcosh (asinh ?a)))"), // ;; log(1 + a^2) = 2 logcosh(asinh a)
        rw!("log-expm1";      "(log (expm1 ?a))"     => "(+ ?a (log (neg (expm1 (neg ?a)))))" if pos("?a")), // ;; log(e^a - 1) = a + log(1 - e^-a), a > 0
        rw!("log-neg-expm1";  "(log (neg (expm1 (neg ?a))))" => "(log1p (neg (exp (neg ?a))))" if pos("?a")), // ;; log(1 - e^-a) = log1p(-e^-a), a > 0
        rw!("log-exp-sum";    "(log (+ (exp ?a) ?b))" => "(+ ?a (log1p (/ ?b (exp ?a))))" if pos("?b")), // ;; log(e^a + b) = a + log1p(b e^-a), b > 0
        rw!("sqrt-1-minus-sq"; "(sqrt (- 1 (* ?a ?a)))" => "(sqrt (* (- 1 ?a) (+ 1 ?a)))"),    // ;; sqrt(1 - a^2) = sqrt((1-a)(1+a))
        rw!("one-minus-sq";   "(- 1 (* ?a ?a))"      => "(* (- 1 ?a) (+ 1 ?a))"),             // ;; 1 - a^2 = (1-a)(1+a)
        rw!("sq-minus-one";   "(- (* ?a ?a) 1)"      => "(* (- ?a 1) (+ ?a 1))"),             // ;; a^2 - 1 = (a-1)(a+1)
        rw!("atanh-log";      "(* 0.5 (log (/ (+ 1 ?a) (- 1 ?a))))" => "(atanh ?a)"),          // ;; log((1+a)/(1-a))/2 = atanh a, |a| < 1
        rw!("log-cosh-sq";    "(log (* (cosh ?a) (cosh ?a)))" => "(* 2 (logcosh ?a))"),     // ;; log cosh^2 a = 2 logcosh a
        rw!("log-pow-pos";    "(log (pow ?a ?b))"    => "(* ?b (log ?a))" if pos("?a")),      // ;; log a^b = b log a, a > 0
        rw!("pow-log1p";      "(pow (+ 1 ?a) ?b)"    => "(exp (* ?b (log1p ?a)))" if pos("?b")), // ;; (1 + a)^b = e^(b log1p a), a > -1
        rw!("one-minus-pow";  "(- 1 (pow ?a ?b))"    => "(neg (expm1 (* ?b (log ?a))))" if pos("?a")), // ;; 1 - a^b = -expm1(b log a), a > 0
        rw!("log1p-neg-pow";  "(log1p (neg (pow ?a ?b)))" => "(log (neg (expm1 (* ?b (log ?a)))))" if pos("?a")), // ;; log(1 - a^b) = log(-expm1(b log a)), a > 0
    ]
}

/// Solving `y = f(x)` for x: `(solve y f)` is the x with f(x) = y. Each rule peels one
/// op off f, applying its inverse to y; guards keep each step a bijection.
#[rustfmt::skip]
pub fn solve() -> Vec<Rule> {
    vec![
        rw!("solve-x";        "(solve ?y x)"                => "?y"),                                              // ;; f(x) = x: x = y
        rw!("solve-add-r";    "(solve ?y (+ ?a ?b))"        => "(solve (- ?y ?b) ?a)" if no_x("?b")),              // ;; a + b = y: a = y - b
        rw!("solve-add-l";    "(solve ?y (+ ?a ?b))"        => "(solve (- ?y ?a) ?b)" if no_x("?a")),              // ;; a + b = y: b = y - a
        rw!("solve-sub-r";    "(solve ?y (- ?a ?b))"        => "(solve (+ ?y ?b) ?a)" if no_x("?b")),              // ;; a - b = y: a = y + b
        rw!("solve-sub-l";    "(solve ?y (- ?a ?b))"        => "(solve (- ?a ?y) ?b)" if no_x("?a")),              // ;; a - b = y: b = a - y
        rw!("solve-mul-r";    "(solve ?y (* ?a ?b))"        => "(solve (/ ?y ?b) ?a)" if no_x_nonzero("?b")),      // ;; a b = y: a = y / b, b != 0
        rw!("solve-mul-l";    "(solve ?y (* ?a ?b))"        => "(solve (/ ?y ?a) ?b)" if no_x_nonzero("?a")),      // ;; a b = y: b = y / a, a != 0
        rw!("solve-div-r";    "(solve ?y (/ ?a ?b))"        => "(solve (* ?y ?b) ?a)" if no_x_nonzero("?b")),      // ;; a / b = y: a = y b, b != 0
        rw!("solve-div-l";    "(solve ?y (/ ?a ?b))"        => "(solve (/ ?a ?y) ?b)" if no_x_nonzero("?a")),      // ;; a / b = y: b = a / y, a != 0
        rw!("solve-neg";      "(solve ?y (neg ?a))"         => "(solve (neg ?y) ?a)"),                             // ;; -a = y: a = -y
        rw!("solve-exp";      "(solve ?y (exp ?a))"         => "(solve (log ?y) ?a)"),                             // ;; e^a = y: a = log y
        rw!("solve-expm1";    "(solve ?y (expm1 ?a))"       => "(solve (log1p ?y) ?a)"),                           // ;; expm1 a = y: a = log1p y
        rw!("solve-log";      "(solve ?y (log ?a))"         => "(solve (exp ?y) ?a)"),                             // ;; log a = y: a = e^y
        rw!("solve-log1p";    "(solve ?y (log1p ?a))"       => "(solve (expm1 ?y) ?a)"),                           // ;; log1p a = y: a = expm1 y
        rw!("solve-sinh";     "(solve ?y (sinh ?a))"        => "(solve (asinh ?y) ?a)"),                           // ;; sinh a = y: a = asinh y
        rw!("solve-asinh";    "(solve ?y (asinh ?a))"       => "(solve (sinh ?y) ?a)"),                            // ;; asinh a = y: a = sinh y
        rw!("solve-tanh";     "(solve ?y (tanh ?a))"        => "(solve (atanh ?y) ?a)"),                           // ;; tanh a = y: a = atanh y
        rw!("solve-atanh";    "(solve ?y (atanh ?a))"       => "(solve (tanh ?y) ?a)"),                            // ;; atanh a = y: a = tanh y
        rw!("solve-cosh-pos"; "(solve ?y (cosh ?a))"        => "(solve (acosh ?y) ?a)" if nonneg("?a")),           // ;; cosh a = y, a >= 0: a = acosh y
        rw!("solve-cosh-neg"; "(solve ?y (cosh ?a))"        => "(solve (neg (acosh ?y)) ?a)" if nonpos("?a")),     // ;; cosh a = y, a <= 0: a = -acosh y
        rw!("solve-acosh";    "(solve ?y (acosh ?a))"       => "(solve (cosh ?y) ?a)"),                            // ;; acosh a = y: a = cosh y
        rw!("solve-atan";     "(solve ?y (atan ?a))"        => "(solve (tan ?y) ?a)"),                             // ;; atan a = y: a = tan y
        rw!("solve-tan";      "(solve ?y (tan ?a))"         => "(solve (atan ?y) ?a)" if within("?a", -std::f64::consts::FRAC_PI_2, std::f64::consts::FRAC_PI_2)), // ;; tan a = y, |a| < pi/2: a = atan y
        rw!("solve-sigmoid";  "(solve ?y (sigmoid ?a))"     => "(solve (logit ?y) ?a)"),                           // ;; sigmoid a = y: a = logit y
        rw!("solve-logit";    "(solve ?y (logit ?a))"       => "(solve (sigmoid ?y) ?a)"),                         // ;; logit a = y: a = sigmoid y
        rw!("solve-softplus"; "(solve ?y (softplus ?a))"    => "(solve (+ ?y (log (neg (expm1 (neg ?y))))) ?a)"),  // ;; softplus a = y: a = y + log(1 - e^-y)
        rw!("solve-sqrt";     "(solve ?y (sqrt ?a))"        => "(solve (* ?y ?y) ?a)"),                            // ;; sqrt a = y: a = y^2
        rw!("solve-cbrt";     "(solve ?y (cbrt ?a))"        => "(solve (* ?y (* ?y ?y)) ?a)"),                     // ;; cbrt a = y: a = y^3
        rw!("solve-cube";     "(solve ?y (* ?a (* ?a ?a)))" => "(solve (cbrt ?y) ?a)"),                            // ;; a^3 = y: a = cbrt y
        rw!("solve-square";   "(solve ?y (* ?a ?a))"        => "(solve (sqrt ?y) ?a)" if nonneg("?a")),            // ;; a^2 = y, a >= 0: a = sqrt y
        rw!("solve-square-n"; "(solve ?y (* ?a ?a))"        => "(solve (neg (sqrt ?y)) ?a)" if nonpos("?a")),      // ;; a^2 = y, a <= 0: a = -sqrt y
        rw!("solve-pow-base"; "(solve ?y (pow ?a ?b))"      => "(solve (pow ?y (/ 1 ?b)) ?a)" if no_x("?b") if pos("?a")), // ;; a^b = y, a > 0: a = y^(1/b)
        rw!("solve-pow-odd";  "(solve ?y (pow ?a ?b))"      => "(solve (* (sign ?y) (pow (abs ?y) (/ 1 ?b))) ?a)" if odd_int("?b")), // ;; a^b = y, b odd: a = sign(y) |y|^(1/b)
        rw!("solve-pow-exp";  "(solve ?y (pow ?a ?b))"      => "(solve (/ (log ?y) (log ?a)) ?b)" if no_x_pos("?a")), // ;; a^b = y, a > 0 const: b = log y / log a
        rw!("solve-softsign"; "(solve ?y (/ ?a (+ ?c (abs ?a))))" => "(solve (/ (* ?c ?y) (- 1 (abs ?y))) ?a)" if no_x_pos("?c")), // ;; a/(c + |a|) = y, c > 0: a = c y/(1 - |y|)
        rw!("solve-softsign-r"; "(solve ?y (/ ?a (+ (abs ?a) ?c)))" => "(solve (/ (* ?c ?y) (- 1 (abs ?y))) ?a)" if no_x_pos("?c")), // ;; a/(|a| + c) = y, c > 0: a = c y/(1 - |y|)
    ]
}

/// Expansive rules: association, distribution, and definitions unfolded into more
/// primitive forms. They grow the e-graph quickly, so they run only as a second attempt
/// when the default set cannot reach a goal (a closed-form inverse, a sign proof).
#[rustfmt::skip]
pub fn expansions() -> Vec<Rule> {
    vec![
        rw!("add-assoc";      "(+ ?a (+ ?b ?c))"     => "(+ (+ ?a ?b) ?c)"),          // ;; a + (b + c) = (a + b) + c
        rw!("mul-assoc";      "(* ?a (* ?b ?c))"     => "(* (* ?a ?b) ?c)"),          // ;; a (b c) = (a b) c
        rw!("sub-as-add";     "(- ?a ?b)"            => "(+ ?a (neg ?b))"),           // ;; a - b = a + (-b)
        rw!("neg-as-mul";     "(neg ?a)"             => "(* -1 ?a)"),                 // ;; -a = (-1) a
        rw!("distribute";     "(* ?a (+ ?b ?c))"     => "(+ (* ?a ?b) (* ?a ?c))"),   // ;; a (b + c) = a b + a c
        rw!("factor";         "(+ (* ?a ?b) (* ?a ?c))" => "(* ?a (+ ?b ?c))"),       // ;; a b + a c = a (b + c)
        rw!("pow-as-exp";     "(pow ?a ?b)"          => "(exp (* ?b (log ?a)))" if pos("?a")), // ;; a^b = e^(b log a), a > 0
        rw!("exp-add";        "(exp (+ ?a ?b))"      => "(* (exp ?a) (exp ?b))"),     // ;; e^(a+b) = e^a e^b
        rw!("sigmoid-expand"; "(sigmoid ?a)"         => "(/ 1 (+ 1 (exp (neg ?a))))"),// ;; sigmoid a = 1/(1 + e^-a)
        rw!("softplus-shift"; "(softplus ?a)"        => "(+ ?a (softplus (neg ?a)))"),// ;; softplus a = a + softplus(-a)
        rw!("tanh-sigmoid";   "(tanh ?a)"            => "(- (* 2 (sigmoid (* 2 ?a))) 1)"), // ;; tanh a = 2 sigmoid(2a) - 1
        rw!("logcosh-softplus"; "(logcosh ?a)"       => "(- (+ ?a (softplus (* -2 ?a))) (log 2))"), // ;; log cosh a = a + softplus(-2a) - log 2
    ]
}

/// The rules used to simplify any formula.
pub fn simplify_rules() -> Vec<Rule> {
    let mut r = algebra();
    r.extend(powers());
    r.extend(exp_log());
    r.extend(hyperbolic());
    r.extend(neural());
    r.extend(stability());
    r
}

/// Every rule, for tests and listings.
pub fn all_rules() -> Vec<Rule> {
    let mut r = simplify_rules();
    r.extend(expansions());
    r.extend(solve());
    r
}
