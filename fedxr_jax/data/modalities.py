"""The input modalities the simulator renders, and the sensors that feed them.

Shapes are kept tiny (CPU tests); every modality cuts into 4 tokens so the
model's sequence grows by 4 per modality. Sensor names are the paper's
Table 1 / Table 2 wording; 'EEG/Physiological' is not in Table 1 (no listed
device has it): it comes from an add-on (`devices.ADDONS`), as in the
paper's neuroadaptive and emotion-aware scenarios.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class Modality:
  name: str
  sensors: tuple       # the Table 1 sensors that produce it
  shape: tuple         # one example's input shape
  token_shape: tuple   # block cut into one token (see models.m3t.tokenize)
  description: str

  @property
  def sensor(self) -> str:
    """The primary sensor (the first of `sensors`)."""
    return self.sensors[0]


MODALITIES = {m.name: m for m in (
    Modality('vision', ('Visual',), (16, 16, 1), (8, 8, 1),
             'egocentric camera frame, 16x16 gray'),
    Modality('audio', ('Audio',), (16, 16), (4, 16),
             'log-mel spectrogram, 16 frames x 16 bins'),
    Modality('motion', ('Motion', 'Head Tracking'), (16, 6), (4, 6),
             'IMU window: accel xyz + gyro xyz, 16 samples'),
    Modality('gaze', ('Eye Tracking',), (16, 3), (4, 3),
             'gaze track: yaw, pitch, pupil diameter, 16 samples'),
    Modality('depth', ('Depth Sensing', 'Spatial Mapping'), (8, 8, 1), (4, 4, 1),
             'depth map of the surroundings, 8x8 (the spatial-mapping input)'),
    Modality('hand', ('Hand Tracking',), (16, 15), (4, 15),
             'hand keypoint track: 5 fingertips xyz relative to the wrist, 16 samples'),
    Modality('thermal', ('Thermal',), (8, 8, 1), (4, 4, 1),
             'thermal camera frame, 8x8'),
    Modality('physio', ('EEG/Physiological',), (16, 4), (4, 4),
             'EEG (2 channels) + electrodermal activity + heart rate, 16 samples'),
)}

# Which modality each sensor feeds.
SENSOR_TO_MODALITY = {s: m.name for m in MODALITIES.values() for s in m.sensors}


def from_sensors(sensors) -> tuple:
  """Modality names fed by `sensors`, in MODALITIES order."""
  have = {SENSOR_TO_MODALITY[s] for s in sensors if s in SENSOR_TO_MODALITY}
  return tuple(m for m in MODALITIES if m in have)
