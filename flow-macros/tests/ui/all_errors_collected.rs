use flow_macros::flow;

flow! {
    bijector f(x) = foo(x);
    bijector g(x; a: reel) = x + a;
    bijector h(x) = x + q;
}

fn main() {}
