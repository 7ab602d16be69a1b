"""Built-in simulators: a parametric eye renderer and an "in the wild" target domain."""
