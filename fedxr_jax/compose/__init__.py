"""The composition root: a config becomes an `Experiment` (model, data, federation).

  experiment   build(config): each component from its own config block
  pipeline     what features (privacy, attacks, compression, LoRA rules)
               contribute between local training and the server
  optimizers   client and server optimizers by (role, name)
  xr_problem   the XR data and the model as a `FederatedProblem`
  pretrained   frozen trees from a pretrained directory
"""
