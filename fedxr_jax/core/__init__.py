"""Model-agnostic federated core: state, tree ops, keys, the compiled round."""
