"""aeon JapaneseVowels: the speaker (9) of a vowel from 12 LPC cepstra (640 series).

  fedxr-train --config=fedxr_jax/configs/real/japanese_vowels.py --workdir=runs/jv

A Dirichlet(0.5) label partition over 20 clients: 16 train (8 a round), 4
are unseen. Series (7 to 29 frames) resampled to 32 frames.
"""
from fedxr_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'japanese_vowels'
  config.data.partition = 'dirichlet'
  config.data.dirichlet_alpha = 0.5
  config.population_size = 16
  config.eval_unseen_clients = 4
  config.cohort_size = 8
  config.num_rounds = 60
  return config
