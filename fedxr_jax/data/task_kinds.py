"""What a task asks a model for: a class, a target vector, or a box (paper Table 2).

A `TaskDef` says a task's kind, its head's output size and its latency
class; every data source's spec lists one per task (`spec.task_defs`), and
the problem adapter computes each task's loss and statistics by kind
(`data.world.objectives`). v1's synthetic tasks and recorded datasets are
all classification.
"""
import dataclasses

from fedxr_jax.data import catalog

KINDS = ('classification', 'regression', 'detection')
# Table 2 latency classes as budgets (ms), read off the v1 catalog.
LATENCY_MS = {t.latency_class: t.latency_ms for t in catalog.TASKS.values()}


@dataclasses.dataclass(frozen=True)
class TaskDef:
  name: str
  kind: str               # one of KINDS
  size: int               # classes, or target dims
  carriers: tuple         # modalities that carry it
  latency_class: str      # Table 2 "Real-Time Constraints"
  output: str             # what the label or target is
  point_dims: int = 0     # regression: coordinates per point (PCK); 0: scalar targets
  pck_threshold: float = 0.0   # a point is correct within this distance (target units)
  scale: float = 1.0      # targets are divided by this in the loss

  @property
  def latency_ms(self) -> float:
    return LATENCY_MS[self.latency_class]

  @property
  def num_points(self) -> int:
    return self.size // self.point_dims if self.point_dims else self.size


def classification(name: str, num_classes: int) -> TaskDef:
  """A classification task of `num_classes`: the catalog's facts where it has the task."""
  task = catalog.TASKS.get(name)
  if task is None:   # a recorded dataset's own task: Table 2's loosest class
    return TaskDef(name, 'classification', num_classes, (), 'moderate', name)
  return TaskDef(name, 'classification', num_classes, task.carriers, task.latency_class,
                 task.output)
