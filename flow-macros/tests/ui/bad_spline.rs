use flow_macros::flow;

flow! {
    flow g(x: R^2) {
        base normal;
        coupling(mask = [1, 0], bijector = spline(bins = 0, bound = 3), net = mlp([4], tanh));
        coupling(mask = [0, 1], bijector = spline(bins = 4, bound = -2), net = mlp([4], tanh));
        autoregressive(bijector = spline(bins = 4), net = made([4], relu));
    }
}

fn main() {}
