"""Secure aggregation as a cost: bits, round trips, work and dropout tolerance.

A cost model only: no cryptography runs here. The simulated server still
sees every update; what this charges is what SecAgg (Bonawitz et al. 2017,
"Practical Secure Aggregation for Privacy-Preserving Machine Learning") or
SecAgg+ (Bell et al. 2020, "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead") would add to the channel and energy models.

Protocol (semi-honest variant, per FL round, for one client u with k
neighbours; SecAgg: k = n - 1, the complete graph; SecAgg+: a k-regular
graph, k = O(log n)). Messages, in bits (a_K key, a_S share, I id, O the
authenticated-encryption overhead of one ciphertext):
  0 AdvertiseKeys     up   2 a_K                 (two public keys)
  1 ShareKeys         down k (2 a_K + I)         (neighbours' keys)
                      up   k (2 a_S + 2 I + O)   (shares of s_sk and b_u, encrypted)
  2 MaskedInput       down k (2 a_S + 2 I + O)   (the shares addressed to u)
                      up   d R                   (the masked update, replacing the plain one)
  3 Unmasking         down k I                   (who sent a masked input)
                      up   k (a_S + I)           (one share per neighbour)
Extra per client: up 2 a_K + k (3 a_S + 3 I + O), down k (2 a_K + 2 a_S + 4 I + O);
4 exchanges instead of 1: 3 extra round trips. d counts every summed word
(example-weighted FedAvg sums the weight too). The active-security
variant's consistency check, with signatures, is not modelled.

Field: each coordinate is clipped to [-clip, clip] and quantized on a grid
of step `step`, L = ceil(2 clip / step) + 1 levels (integers 0..L-1); the
sum over n clients must not wrap, so the modulus is >= n (L - 1) + 1 and a
masked coordinate takes R = ceil(log2(n (L - 1) + 1)) bits.

Dropouts: every secret needs t of its holders' shares (holders: the k
neighbours). The round completes if each client keeps >= t surviving
neighbours: SecAgg survives any n - 1 - t dropouts; SecAgg+ survives any
k - t (adversarial), and random dropouts at rate p fail with probability
<= n P(Binomial(k, 1 - p) < t) (union bound). t must exceed the holders
an adversary controls (fewer than t learn nothing) and cannot exceed the
survivors; the default t = floor(2k/3) + 1, a two-thirds majority of a
client's neighbours, lets fewer than a third drop while more than two
thirds must collude to unmask. It is a parameter.

In a run (`privacy.secure_aggregation=secagg|secagg_plus`, `contribute`):
each participating client's upload becomes the masked vector d R plus the
extra uplink bits, its download gains the extra downlink bits; the
channel model charges them as airtime and transmit energy in the round's
one up/down phase (it has no per-message latency, so the 3 extra round
trips are reported, 'secagg/extra_round_trips', not timed). d: every
coordinate of the shared trees (a client lacking a module masks zeros), plus
one word per module weight where the mean is example-weighted (not under
DP, whose sum is unweighted). L = 2^quantization_bits levels per coordinate.
EXCLUDES says what it rules out, refused in one line.

SecAgg+ degree: Bell et al. prove k = O(log n) suffices and give concrete
k for security/correctness parameters; their abstract's one concrete
point (semi-malicious, n = 10^4 clients, 5% corrupt, 5% dropouts) is 3% of
the clients, k = 300. The default scales that point by log n: k = min(n -
1, ceil(300 log2 n / log2 10^4)), so cohorts of n <= 169 get the complete
graph, i.e. plain SecAgg. Pass `neighbours` to use a table value instead.
"""
import dataclasses
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from scipy import stats

from fedxr_jax.core import held
from fedxr_jax.core import transforms as transforms_lib
from fedxr_jax.errors import ConfigError

PROTOCOLS = ('secagg', 'secagg_plus')
_BELL_K, _BELL_N = 300, 10 ** 4

# What summing masked vectors rules out (names as in the aggregator and
# transform registries and aggregators.omniscient).
EXCLUDED_AGGREGATORS = frozenset({   # they need the individual updates
    'median', 'trimmed_mean', 'krum', 'multi_krum', 'geometric_median',
    'centered_clipping', 'norm_bounding'})
EXCLUDED_ATTACKS = frozenset({'alie', 'ipm'})   # they read the honest updates
EXCLUDED_COMPRESSION = frozenset({   # no common integer grid: supports or scales per client
    'topk', 'sign', 'qsgd'})
EXCLUDES = ('secure aggregation sums masked vectors, so it excludes the aggregators that need '
            'individual updates (' + ', '.join(sorted(EXCLUDED_AGGREGATORS)) + '), the '
            'attacks that read honest updates (' + ', '.join(sorted(EXCLUDED_ATTACKS)) + ') and '
            'per-client compression (' + ', '.join(sorted(EXCLUDED_COMPRESSION)) + ')')


def field_bits(cohort_size: int, clip: float, step: float) -> int:
  """R = ceil(log2(n (L - 1) + 1)), L = ceil(2 clip / step) + 1 quantization levels."""
  if cohort_size < 1:
    raise ConfigError(f'secure aggregation needs cohort_size >= 1, got {cohort_size}')
  if not (clip > 0 and step > 0 and math.isfinite(clip)):
    raise ConfigError(f'secure aggregation needs finite clip > 0 and step > 0, got {clip}, {step}')
  # Relative 1e-9: 2 / 0.1 is 20.000000000000004 in floating point, still 20 steps.
  steps = 2 * clip / step
  top = math.ceil(steps - 1e-9 * max(1.0, steps))   # L - 1
  return max(1, math.ceil(math.log2(cohort_size * top + 1)))


def default_neighbours(cohort_size: int) -> int:
  """SecAgg+'s k: Bell et al.'s 300 neighbours at 10^4 clients, scaled by log2 n; <= n - 1."""
  if cohort_size < 2:
    raise ConfigError(f'secure aggregation needs cohort_size >= 2, got {cohort_size}')
  # 1e-9: n = 1000 gives 225.00000000000003, still 225.
  scaled = _BELL_K * math.log2(cohort_size) / math.log2(_BELL_N)
  return min(cohort_size - 1, math.ceil(scaled - 1e-9))


class SecAggCost(NamedTuple):
  protocol: str
  cohort_size: int          # n
  neighbours: int           # k: n - 1 for SecAgg
  threshold: int            # t: shares that rebuild one secret
  field_bits: int           # R: bits per masked coordinate
  masked_update_bits: int   # d R per client: replaces the plain update upload
  extra_uplink_bits: int    # per client, beyond the masked update
  extra_downlink_bits: int  # per client
  extra_round_trips: int    # per FL round
  dropout_tolerance: int    # clients that may drop, anywhere, and the round still completes
  client_key_agreements: int  # per client: k pairwise Diffie-Hellman
  client_mask_words: int      # per client: PRG output words, (k + 1) d
  server_mask_words: int      # PRG words to unmask with `dropouts` clients gone
  server_reconstructions: int  # Shamir reconstructions of t shares: one secret per client


def cost(protocol: str, *, cohort_size: int, update_size: int, field_bits: int,
         neighbours: Optional[int] = None, threshold: Optional[int] = None,
         dropouts: int = 0, key_bits: int = 256, share_bits: int = 256,
         id_bits: int = 32, aead_overhead_bits: int = 224) -> SecAggCost:
  """The per-round cost of `protocol` for n = cohort_size clients and d = update_size words.

  Defaults: X25519 keys (256 bits), Shamir shares of 256-bit secrets, 32-bit
  client ids, AES-GCM overhead (96-bit nonce + 128-bit tag). `dropouts`:
  clients that vanish after sharing keys (the server regenerates their
  pairwise masks with each surviving neighbour).
  """
  if protocol not in PROTOCOLS:
    raise ConfigError(f'privacy.secure_aggregation must be one of {PROTOCOLS}, got {protocol!r}')
  n, d = int(cohort_size), int(update_size)
  if n < 2 or d < 1 or field_bits < 1:
    raise ConfigError(f'secure aggregation needs cohort_size >= 2, update_size >= 1 and '
                      f'field_bits >= 1, got {n}, {d}, {field_bits}')
  if protocol == 'secagg':
    if neighbours not in (None, n - 1):
      raise ConfigError(f"secagg uses the complete graph (neighbours = {n - 1}), got {neighbours}")
    k = n - 1
  else:
    k = default_neighbours(n) if neighbours is None else int(neighbours)
    if not 1 <= k <= n - 1:
      raise ConfigError(f'secagg_plus neighbours must be in [1, {n - 1}], got {k}')
  t = 2 * k // 3 + 1 if threshold is None else int(threshold)
  if not 1 <= t <= k:
    raise ConfigError(f'secure aggregation threshold must be in [1, neighbours={k}], got {t}')
  if not 0 <= dropouts < n:
    raise ConfigError(f'dropouts must be in [0, {n - 1}], got {dropouts}')
  a_k, a_s, i, o = key_bits, share_bits, id_bits, aead_overhead_bits
  survivors = n - dropouts
  return SecAggCost(
      protocol=protocol, cohort_size=n, neighbours=k, threshold=t, field_bits=int(field_bits),
      masked_update_bits=d * int(field_bits),
      extra_uplink_bits=2 * a_k + k * (3 * a_s + 3 * i + o),
      extra_downlink_bits=k * (2 * a_k + 2 * a_s + 4 * i + o),
      extra_round_trips=3,
      dropout_tolerance=k - t,
      client_key_agreements=k,
      client_mask_words=(k + 1) * d,
      # b_u of each survivor, plus each dropped client's masks with its surviving neighbours.
      server_mask_words=(survivors + dropouts * min(k, survivors)) * d,
      server_reconstructions=n)


def failure_probability(c: SecAggCost, dropout_rate: float) -> float:
  """P(the round fails) when each client drops independently with `dropout_rate`.

  SecAgg: exact, P(Binomial(n, p) >= n - t): with D dropouts a survivor's
  secret keeps n - 1 - D holders, so the round fails iff D > n - 1 - t.
  SecAgg+: the union bound over clients n P(Binomial(k, 1 - p) < t), capped at 1.
  """
  if not 0.0 <= dropout_rate <= 1.0:
    raise ConfigError(f'dropout_rate must be in [0, 1], got {dropout_rate}')
  n, k, t = c.cohort_size, c.neighbours, c.threshold
  if c.protocol == 'secagg':
    return float(stats.binom.sf(n - t - 1, n, dropout_rate))
  return min(1.0, n * float(stats.binom.cdf(t - 1, k, 1.0 - dropout_rate)))


def excluded(aggregator: str = 'mean', attack: str = 'none',
             compression: str = 'none') -> Optional[str]:
  """The one-line refusal for combining secure aggregation with these, or None."""
  bad = []
  if aggregator in EXCLUDED_AGGREGATORS:
    bad.append(f'aggregator {aggregator!r} (needs individual updates)')
  if attack in EXCLUDED_ATTACKS:
    bad.append(f'attack {attack!r} (reads the honest updates)')
  if compression in EXCLUDED_COMPRESSION:
    bad.append(f'compression {compression!r} (no common integer grid across clients)')
  if not bad:
    return None
  return ('privacy.secure_aggregation sums masked updates, so it excludes '
          + ', '.join(bad))


def check(aggregator: str = 'mean', attack: str = 'none', compression: str = 'none') -> None:
  """ConfigError with `excluded`'s line when the combination cannot run under SecAgg."""
  message = excluded(aggregator, attack, compression)
  if message:
    raise ConfigError(message)


# ---- in a run ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
  """`privacy.secagg`: the SecAgg+ graph degree (0: `default_neighbours`), the
  shares that rebuild a secret (0: two thirds of the neighbours + 1), and the
  quantization of each coordinate (2^quantization_bits levels)."""
  neighbours: int = 0
  threshold: int = 0
  quantization_bits: int = 16


def run_cost(protocol: str, s: Settings, *, cohort_size: int, update_size: int) -> SecAggCost:
  """The per-round cost of a run's settings (quantization on [-1, 1]: R depends on the levels)."""
  if not 1 <= s.quantization_bits <= 32:
    raise ConfigError(f'privacy.secagg.quantization_bits must be in [1, 32], got '
                      f'{s.quantization_bits}')
  if s.neighbours < 0 or s.threshold < 0:
    raise ConfigError('privacy.secagg.neighbours and threshold must be >= 0 (0: the default)')
  bits = field_bits(cohort_size, 1.0, 2.0 / (2 ** s.quantization_bits - 1))
  return cost(protocol, cohort_size=cohort_size, update_size=update_size, field_bits=bits,
              neighbours=(s.neighbours or None) if protocol == 'secagg_plus' else None,
              threshold=s.threshold or None)


def cost_transform(c: SecAggCost) -> transforms_lib.UpdateTransform:
  """Reports a participating client's SecAgg bits (changes no update).

  'upload_bits' replaces the plain upload's count (the round's convention);
  'extra_download_bits' is added to its download (`core.client`). A client
  that sends nothing this round (unavailable, or holding no module) is a
  dropout before the protocol starts: it is charged nothing.
  """
  up = float(c.masked_update_bits + c.extra_uplink_bits)
  down = float(c.extra_downlink_bits)

  def update(update, key, weights, info):
    del key, info
    here = held.holds_any(weights, 0)
    return update, weights, {'upload_bits': jnp.where(here, up, 0.0).astype(jnp.float32),
                             'extra_download_bits': jnp.where(here, down, 0.0).astype(
                                 jnp.float32)}

  return transforms_lib.stateless(update)


def host_metrics(c: SecAggCost) -> dict:
  """The protocol's per-round facts beside the channel model's rows."""
  return {'secagg/extra_round_trips': c.extra_round_trips,
          'secagg/dropout_tolerance': c.dropout_tolerance,
          'secagg/neighbours': c.neighbours, 'secagg/threshold': c.threshold,
          'secagg/field_bits': c.field_bits,
          'secagg/extra_uplink_bits_per_client': c.extra_uplink_bits,
          'secagg/extra_downlink_bits_per_client': c.extra_downlink_bits}


def update_words(shared_shapes: dict, weight_shapes: Optional[dict]) -> int:
  """d: coordinates of the shared trees, plus the module weights where they are summed."""
  size = lambda tree: sum(int(math.prod(x.shape)) for x in jax.tree.leaves(tree))
  return size(shared_shapes) + (size(weight_shapes) if weight_shapes is not None else 0)


def check_run(caps, protocol: str) -> None:
  """Refuses, in one line, what summing masked vectors cannot serve (`EXCLUDES`)."""
  bad = []
  if caps.aggregator_name in EXCLUDED_AGGREGATORS or caps.aggregator.stacked:
    bad.append(f'aggregator.name={caps.aggregator_name}')
  for other in caps.others:
    if other.wrap_aggregator is not None:
      bad.append(f'the {other.feature} feature (it reads every upload)')
    if other.feature == 'compression' and other.transforms:
      bad.append('compression.name (no common integer grid)')
  if bad:
    raise ConfigError(f"privacy.secure_aggregation={protocol} with {', '.join(bad)}: {EXCLUDES}")
