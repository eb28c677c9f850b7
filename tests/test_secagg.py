"""SecAgg / SecAgg+ cost model against hand computations, and what it excludes."""
import pytest

from fedxr_jax.aggregators import registry as aggregator_registry
from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import secagg
from fedxr_jax.transforms import registry as transform_registry


def test_field_bits_by_hand():
  # [-1, 1] at step 0.5: 5 levels (0..4); 4 clients sum to <= 16, 17 values: 5 bits.
  assert secagg.field_bits(4, 1.0, 0.5) == 5
  # 10 clients: <= 40, 41 values: 6 bits. 2 / 0.1 is 20 steps despite floating point.
  assert secagg.field_bits(10, 1.0, 0.5) == 6
  assert secagg.field_bits(1, 1.0, 0.1) == 5          # 21 levels: 0..20
  assert secagg.field_bits(1000, 8.0, 16.0 / (2 ** 22 - 1)) == 22 + 10   # Flower's 2^22 grid


def test_secagg_costs_by_hand():
  c = secagg.cost('secagg', cohort_size=4, update_size=10, field_bits=5)
  # k = 3 neighbours, t = floor(2 * 3 / 3) + 1 = 3: no client may drop.
  assert (c.neighbours, c.threshold, c.dropout_tolerance) == (3, 3, 0)
  assert c.masked_update_bits == 10 * 5
  # up: 2 keys + 3 x (two shares, two ids, AEAD) + 3 x (a share and an id)
  assert c.extra_uplink_bits == 2 * 256 + 3 * (2 * 256 + 2 * 32 + 224) + 3 * (256 + 32) == 3776
  # down: 3 x (two keys and an id) + 3 forwarded ciphertexts + 3 ids of survivors
  assert c.extra_downlink_bits == 3 * (2 * 256 + 32) + 3 * (2 * 256 + 2 * 32 + 224) + 3 * 32 \
      == 4128
  assert c.extra_round_trips == 3
  assert (c.client_key_agreements, c.client_mask_words) == (3, 4 * 10)
  assert (c.server_mask_words, c.server_reconstructions) == (4 * 10, 4)


def test_secagg_plus_costs_by_hand():
  c = secagg.cost('secagg_plus', cohort_size=10, update_size=100, field_bits=6, neighbours=4,
                  dropouts=2, id_bits=0, aead_overhead_bits=0)
  assert (c.neighbours, c.threshold, c.dropout_tolerance) == (4, 3, 1)
  # Without ids and AEAD overhead: up 2 a_K + 3 k a_S, down 2 k a_K + 2 k a_S.
  assert c.extra_uplink_bits == 2 * 256 + 3 * 4 * 256 == 3584
  assert c.extra_downlink_bits == 2 * 4 * 256 + 2 * 4 * 256 == 4096
  assert c.masked_update_bits == 600
  # 8 survivors' self masks + 2 dropped clients' masks with their 4 neighbours each.
  assert c.server_mask_words == (8 + 2 * 4) * 100
  assert c.client_mask_words == 5 * 100


def test_secagg_plus_default_degree_follows_bell_et_al_scaled_by_log_n():
  assert secagg.default_neighbours(10 ** 4) == 300      # their stated point
  assert secagg.default_neighbours(1000) == 225          # 300 x 3 / 4
  assert secagg.default_neighbours(32) == 31             # small cohorts: the complete graph
  assert secagg.default_neighbours(169) == 168 and secagg.default_neighbours(170) == 168
  big = secagg.cost('secagg_plus', cohort_size=10 ** 6, update_size=1, field_bits=1)
  assert big.neighbours == 450                           # 300 x 6 / 4
  # Per-client bits grow with k, not n: SecAgg's would be 10^6 / 450 times larger.
  full = secagg.cost('secagg', cohort_size=10 ** 6, update_size=1, field_bits=1)
  assert full.extra_uplink_bits > 2000 * big.extra_uplink_bits


def test_failure_probability_by_hand():
  c = secagg.cost('secagg', cohort_size=4, update_size=1, field_bits=1)
  # t = 3 of 3 neighbours: any dropout fails the round.
  assert secagg.failure_probability(c, 0.1) == pytest.approx(1 - 0.9 ** 4, rel=1e-12)
  plus = secagg.cost('secagg_plus', cohort_size=10, update_size=1, field_bits=1, neighbours=4)
  # Union bound: 10 P(Bin(4, 0.9) <= 2) = 10 (1 - 0.9^4 - 4 0.9^3 0.1).
  one = 1 - 0.9 ** 4 - 4 * 0.9 ** 3 * 0.1
  assert secagg.failure_probability(plus, 0.1) == pytest.approx(10 * one, rel=1e-12)
  assert secagg.failure_probability(plus, 0.0) == 0.0
  assert secagg.failure_probability(plus, 0.9) == 1.0
  # SecAgg survives exactly n - 1 - t dropouts: with t = 2 of 5 neighbours, 3 of 6 clients.
  six = secagg.cost('secagg', cohort_size=6, update_size=1, field_bits=1, threshold=2)
  assert six.dropout_tolerance == 3


def test_exclusions_are_data_and_one_line():
  assert secagg.EXCLUDED_AGGREGATORS == set(aggregator_registry.AGGREGATORS) - {'mean'}
  assert secagg.EXCLUDED_COMPRESSION == set(transform_registry.COMPRESSORS)
  assert secagg.EXCLUDED_ATTACKS == {'alie', 'ipm'}
  for attack in transform_registry.ATTACKS:      # per-client attacks send what they like
    assert secagg.excluded('mean', attack, 'none') is None
  assert secagg.excluded() is None
  line = secagg.excluded('krum', 'alie', 'topk')
  assert line == ("privacy.secure_aggregation sums masked updates, so it excludes aggregator "
                  "'krum' (needs individual updates), attack 'alie' (reads the honest updates), "
                  "compression 'topk' (no common integer grid across clients)")
  with pytest.raises(ConfigError, match="aggregator 'median'") as err:
    secagg.check('median')
  assert '\n' not in str(err.value)


@pytest.mark.parametrize('kwargs,words', [
    (dict(protocol='secagg_plus_plus'), 'secure_aggregation'),
    (dict(cohort_size=1), 'cohort_size'),
    (dict(protocol='secagg', neighbours=2), 'complete graph'),
    (dict(neighbours=10), 'neighbours'),
    (dict(threshold=0), 'threshold'),
    (dict(neighbours=4, threshold=5), 'threshold'),
    (dict(dropouts=10), 'dropouts'),
])
def test_bad_settings_are_one_line_config_errors(kwargs, words):
  args = dict(protocol='secagg_plus', cohort_size=10, update_size=5, field_bits=8)
  args.update(kwargs)
  with pytest.raises(ConfigError, match=words) as err:
    secagg.cost(args.pop('protocol'), **args)
  assert '\n' not in str(err.value)
  with pytest.raises(ConfigError, match='clip'):
    secagg.field_bits(4, 0.0, 0.5)
