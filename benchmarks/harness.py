"""What the A/B benchmark scripts share: medians, how far two runs' rows are apart, and
variants run round-robin in fresh processes (the machine is shared: they see the same load)."""
import json
import math
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = 'RESULT '   # a child prints its result on one line after this


def median(xs):
  xs = sorted(xs)
  n = len(xs)
  return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def rows_gap(rows_a: dict, rows_b: dict) -> dict:
  """{name: [rows]} twice: values compared, how many differ, the largest relative gap."""
  total, differ, worst = 0, 0, 0.0
  for name, rows in rows_a.items():
    for row, other in zip(rows, rows_b[name]):
      for key in set(row) | set(other):
        total += 1
        a, b = row.get(key), other.get(key)
        if a == b or (isinstance(a, float) and isinstance(b, float)
                      and math.isnan(a) and math.isnan(b)):
          continue
        differ += 1
        numbers = all(isinstance(v, (int, float)) for v in (a, b))
        worst = max(worst, abs(a - b) / max(abs(a), 1e-30)) if numbers else math.inf
  return {'values': total, 'differ': differ, 'max_relative': worst}


def interleaved(variants, repeats: int, command, partial: str, describe) -> dict:
  """{variant: [result]}: `command(variant)` (argv of a child printing RESULT json) per
  (repeat, variant), round-robin, without the persistent compilation cache; every result is
  kept in `partial` as it comes, so nothing measured is lost."""
  runs = {}
  env = {**os.environ, 'PYTHONPATH': REPO, 'JAX_ENABLE_COMPILATION_CACHE': 'false'}
  for repeat in range(repeats):
    for variant in variants:
      out = subprocess.run(command(variant), cwd=REPO, env=env, capture_output=True, text=True)
      line = next((l for l in out.stdout.splitlines() if l.startswith(RESULT)), None)
      if out.returncode or line is None:
        raise SystemExit(f'{variant} failed:\n{out.stderr[-3000:]}')
      runs.setdefault(variant, []).append(json.loads(line[len(RESULT):]))
      with open(partial, 'w') as f:
        json.dump(runs, f)
      print(f'repeat {repeat} {variant}: {describe(runs[variant][-1])}', flush=True)
  return runs


def describe_gap(gap: dict) -> str:
  """A `rows_gap` in words."""
  if not gap['differ']:
    return 'bit-identical'
  return (f"{gap['differ']} of {gap['values']} values differ, at most "
          f"{gap['max_relative']:.1e} relative")


def write_markdown(path: str, lines: list, note: str = '') -> None:
  """The table's lines, then the run's note (the machine's load, ...)."""
  lines = lines + [''] + ([note, ''] if note else [])
  with open(path, 'w') as f:
    f.write('\n'.join(lines))


def load_results(json_path: str, empty: dict) -> dict:
  """The results saved at json_path (a rerun adds to them), or `empty` if none are."""
  if not os.path.exists(json_path):
    return empty
  with open(json_path) as f:
    return json.load(f)


def retable(json_path: str, note: str, write_table) -> None:
  """--table: the markdown again from saved results (a new note is saved with them)."""
  with open(json_path) as f:
    results = json.load(f)
  if note:
    results['note'] = note
    with open(json_path, 'w') as f:
      json.dump(results, f, indent=2, sort_keys=True)
  write_table(results, os.path.splitext(json_path)[0] + '.md')
