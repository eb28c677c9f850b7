"""The XR devices of the paper's Table 1 with their hardware, and sensor add-ons.

Sensors, type and deployment environments are Table 1's. Every hardware
figure is a `Fact`: a value with where it comes from. Vendors publish RAM,
battery, runtime and radio for most devices, but almost never FLOP/s or
power: those are estimates, and their source says so and how they were
derived. Training throughput is `peak fp32 FLOP/s x sustained training
utilization` (the simulator trains in fp32); the compute tier of a device
is that throughput over the reference device's (Apple Vision Pro, M2).
"""
import dataclasses
import math
from typing import Optional, Union

from fedxr_jax.data import modalities as modalities_lib


@dataclasses.dataclass(frozen=True)
class Fact:
  value: Union[float, str]
  source: str   # a published spec sheet, or 'estimate: <rationale>'


@dataclasses.dataclass(frozen=True)
class Hardware:
  chip: Fact                 # SoC / GPU that would run training
  peak_fp32_tflops: Fact
  peak_fp16_tflops: Fact
  train_utilization: Fact    # sustained fraction of fp32 peak while training
  ram_gb: Fact               # memory training can share with the OS and apps
  battery_wh: Fact           # 0: mains-powered (tethered)
  runtime_h: Fact            # battery runtime in typical use (inf: mains)
  radio: Fact                # Wi-Fi generation / Bluetooth
  tx_power_dbm: Fact         # uplink transmit power
  compute_power_w: Fact      # device power while training

  def facts(self) -> dict:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# Training utilization by software stack (estimates: no vendor publishes
# them). Small-batch transformer training reaches a fraction of peak that
# falls with the maturity of the on-device compute stack.
_UTIL_CUDA = Fact(0.30, 'estimate: small-batch transformer training with a mature CUDA '
                        'stack reaches ~30% of fp32 peak')
_UTIL_APPLE = Fact(0.25, 'estimate: Metal/MLX training of small transformers reaches '
                         '~20-30% of the M2 GPU fp32 peak')
_UTIL_MOBILE = Fact(0.15, 'estimate: Vulkan/OpenCL compute on a mobile GPU reaches '
                          '~10-20% of peak (thermal throttling, immature training stacks)')
_UTIL_LOW = Fact(0.10, 'estimate: glasses-class SoCs train on CPU/NEON or an inference NPU; '
                       '~10% of the nominal peak')
_TX_WIFI = Fact(20.0, 'estimate: typical Wi-Fi client transmit power (~17-21 dBm); '
                      'vendors do not publish it')
_TX_GLASSES = Fact(10.0, 'estimate: low-power Wi-Fi/Bluetooth radio in glasses frames '
                         '(~10 dBm)')
_GLASSES_RAM = Fact(2.0, 'estimate: 2 GB, glasses-class SoC (not published)')


def _adreno(fp32_tflops: float, source: str):
  """fp32 and fp16 facts of an Adreno GPU (fp16 runs at twice the fp32 rate)."""
  return (Fact(fp32_tflops, source),
          Fact(2 * fp32_tflops, 'estimate: Adreno GPUs run fp16 at twice the fp32 rate'))


_XR2_GEN1 = _adreno(1.2, 'estimate: Adreno 650 ~1.2 TFLOPS fp32, as widely quoted for the '
                         'Snapdragon 865 / XR2 Gen 1 GPU (Qualcomm does not publish FLOPS)')
_XR2_GEN2 = _adreno(3.0, 'estimate: Qualcomm quotes 2.5x the GPU performance of XR2 Gen 1 '
                         '(~1.2 TFLOPS) -> ~3.0 TFLOPS fp32 (FLOPS not published)')
_XR2P_GEN2 = _adreno(3.45, 'estimate: XR2 Gen 2 (~3.0 TFLOPS) x 1.15 (Qualcomm: 15% higher '
                           'GPU frequency on XR2+ Gen 2)')
_GLASSES_SOC = _adreno(0.1, 'estimate: glasses-class GPU (Snapdragon AR1 class), ~0.1 '
                            'TFLOPS fp32; not published')


@dataclasses.dataclass(frozen=True)
class Device:
  """A Table 1 device.

  The first six fields keep the old positional form for ad-hoc devices
  (e.g. a smartphone for real data): without `hardware`, train_flops,
  tx_power_dbm and compute_power_w fall back to class assumptions.
  """
  name: str
  kind: str            # MR, VR / MR, AR, Smart Glasses (Table 1 "Type")
  sensors: tuple       # Table 1 "Modalities Collected"
  environments: tuple  # Table 1 "Typical Deployment Environment" (lowercase)
  compute_tier: float  # training throughput / the reference device's
  chip: str
  hardware: Optional[Hardware] = None

  @property
  def train_flops(self) -> float:
    """Sustained training FLOP/s."""
    if self.hardware is None:
      return self.compute_tier * REFERENCE_TRAIN_FLOPS
    h = self.hardware
    return h.peak_fp32_tflops.value * 1e12 * h.train_utilization.value

  @property
  def half_rate(self) -> float:
    """16-bit over 32-bit peak FLOP/s (1 without hardware facts)."""
    if self.hardware is None:
      return 1.0
    return self.hardware.peak_fp16_tflops.value / self.hardware.peak_fp32_tflops.value

  @property
  def tx_power_dbm(self) -> float:
    if self.hardware is None:   # 3GPP class-3 UE maximum; glasses: BT LE class
      return 13.0 if self.kind == 'Smart Glasses' else 23.0
    return self.hardware.tx_power_dbm.value

  @property
  def compute_power_w(self) -> float:
    if self.hardware is None:
      return 1.5 if self.kind == 'Smart Glasses' else 8.0
    return self.hardware.compute_power_w.value

  @property
  def ram_gb(self) -> float:
    return self.hardware.ram_gb.value if self.hardware else 8.0

  @property
  def battery_wh(self) -> float:
    return self.hardware.battery_wh.value if self.hardware else 15.0

  @property
  def runtime_h(self) -> float:
    return self.hardware.runtime_h.value if self.hardware else 4.0

  @property
  def modalities(self) -> tuple:
    """Modalities this device can feed the model."""
    return modalities_lib.from_sensors(self.sensors)


# Throughput of compute tier 1.0: Apple M2 GPU 3.6 TFLOPS x 25%.
REFERENCE_TRAIN_FLOPS = 3.6e12 * _UTIL_APPLE.value


def _device(name, kind, sensors, environments, hardware: Hardware) -> Device:
  d = Device(name, kind, tuple(sensors), tuple(environments), 0.0,
             str(hardware.chip.value), hardware)
  return dataclasses.replace(d, compute_tier=d.train_flops / REFERENCE_TRAIN_FLOPS)


_FULL = ('Visual', 'Audio', 'Eye Tracking', 'Hand Tracking', 'Spatial Mapping',
         'Motion', 'Depth Sensing')
_QUEST = ('Visual', 'Audio', 'Motion', 'Hand Tracking', 'Depth Sensing', 'Spatial Mapping')

DEVICES = {d.name: d for d in (
    _device('apple_vision_pro', 'MR', _FULL, ('home', 'office'), Hardware(
        chip=Fact('Apple M2 (8-core CPU, 10-core GPU) + R1', 'Apple Vision Pro tech specs'),
        peak_fp32_tflops=Fact(3.6, 'Apple: M2 GPU 3.6 TFLOPS (M2 announcement, 2022)'),
        peak_fp16_tflops=Fact(3.6, 'estimate: Apple M-series GPUs run fp16 at the fp32 '
                                   'rate; the 15.8 TOPS Neural Engine is inference-only'),
        train_utilization=_UTIL_APPLE,
        ram_gb=Fact(16.0, 'reported: 16 GB unified memory (teardowns, Apple M2 config)'),
        battery_wh=Fact(35.9, 'reported: 3166 mAh at 11.34 V = 35.9 Wh external pack '
                              '(label in teardowns)'),
        runtime_h=Fact(2.0, 'Apple tech specs: up to 2 h general use'),
        radio=Fact('Wi-Fi 6 (802.11ax), Bluetooth 5.3', 'Apple tech specs'),
        tx_power_dbm=_TX_WIFI,
        compute_power_w=Fact(10.0, 'estimate: M2 GPU sustained ~8-12 W in the headset '
                                   '(whole headset ~18 W = 35.9 Wh / 2 h incl. displays)'))),
    _device('htc_vive_xr_elite', 'VR / MR', _QUEST, ('home', 'lab', 'enterprise'), Hardware(
        chip=Fact('Qualcomm Snapdragon XR2 Gen 1 (Adreno 650)', 'HTC Vive XR Elite specs'),
        peak_fp32_tflops=_XR2_GEN1[0], peak_fp16_tflops=_XR2_GEN1[1],
        train_utilization=_UTIL_MOBILE,
        ram_gb=Fact(12.0, 'HTC Vive XR Elite specs: 12 GB'),
        battery_wh=Fact(23.9, 'HTC specs: 6200 mAh; x 3.85 V nominal Li-ion (assumed) '
                              '= 23.9 Wh'),
        runtime_h=Fact(2.0, 'HTC specs: up to 2 h'),
        radio=Fact('Wi-Fi 6E, Bluetooth 5.2', 'HTC Vive XR Elite specs'),
        tx_power_dbm=_TX_WIFI,
        compute_power_w=Fact(6.0, 'estimate: XR2 Gen 1 sustained SoC power ~5-7 W'))),
    _device('magic_leap_2', 'AR', _FULL, ('industrial', 'healthcare', 'enterprise'), Hardware(
        chip=Fact('AMD custom SoC: 4 Zen 2 cores + RDNA 2 GPU (4 WGP = 8 CUs)',
                  'Magic Leap developer docs (ML1 -> ML2 hardware comparison)'),
        peak_fp32_tflops=Fact(1.6, 'estimate: 8 RDNA 2 CUs x 64 lanes x 2 FLOP x ~1.6 GHz '
                                   '(clock not published)'),
        peak_fp16_tflops=Fact(3.2, 'estimate: RDNA 2 packed fp16 at twice the fp32 rate'),
        train_utilization=_UTIL_MOBILE,
        ram_gb=Fact(16.0, 'Magic Leap 2 specs: 16 GB'),
        battery_wh=Fact(24.5, 'estimate: sized from the published 3.5 h at ~7 W'),
        runtime_h=Fact(3.5, 'Magic Leap 2 specs: up to 3.5 h continuous use'),
        radio=Fact('Wi-Fi 6 (802.11ax), Bluetooth 5.1', 'Magic Leap 2 specs'),
        tx_power_dbm=_TX_WIFI,
        compute_power_w=Fact(7.0, 'estimate: compute-pack SoC sustained ~7 W'))),
    _device('meta_quest_3', 'VR / MR', _QUEST, ('home', 'gaming', 'office'), Hardware(
        chip=Fact('Qualcomm Snapdragon XR2 Gen 2 (Adreno 740)', 'Meta Quest 3 specs'),
        peak_fp32_tflops=_XR2_GEN2[0], peak_fp16_tflops=_XR2_GEN2[1],
        train_utilization=_UTIL_MOBILE,
        ram_gb=Fact(8.0, 'Meta Quest 3 specs: 8 GB'),
        battery_wh=Fact(19.44, 'Meta Quest 3 specs: 5060 mAh, 19.44 Wh'),
        runtime_h=Fact(2.2, 'Meta Quest 3 specs: 2.2 h average use'),
        radio=Fact('Wi-Fi 6E, Bluetooth 5.2', 'Meta Quest 3 specs'),
        tx_power_dbm=_TX_WIFI,
        compute_power_w=Fact(7.0, 'estimate: XR2 Gen 2 sustained SoC power ~6-8 W'))),
    _device('meta_quest_pro', 'MR', _FULL, ('office', 'enterprise', 'productivity'), Hardware(
        chip=Fact('Qualcomm Snapdragon XR2+ Gen 1 (Adreno 650)', 'Meta Quest Pro specs'),
        peak_fp32_tflops=Fact(1.2, 'estimate: the XR2 Gen 1 GPU (Adreno 650, ~1.2 TFLOPS); '
                                   'XR2+ adds sustained power, not peak'),
        peak_fp16_tflops=_XR2_GEN1[1],
        train_utilization=_UTIL_MOBILE,
        ram_gb=Fact(12.0, 'Meta Quest Pro specs: 12 GB'),
        battery_wh=Fact(20.6, 'Meta specs: 5348 mAh; x 3.85 V nominal (assumed) = 20.6 Wh'),
        runtime_h=Fact(1.5, 'Meta Quest Pro specs: 1-2 h'),
        radio=Fact('Wi-Fi 6E, Bluetooth 5.2', 'Meta Quest Pro specs'),
        tx_power_dbm=_TX_WIFI,
        compute_power_w=Fact(8.0, 'estimate: XR2+ Gen 1 runs ~50% more sustained power '
                                  'than XR2 Gen 1 (Qualcomm), ~8 W'))),
    _device('hololens_2', 'AR', _FULL, ('hospital', 'industrial', 'education'), Hardware(
        chip=Fact('Qualcomm Snapdragon 850 (Adreno 630) + HPU 2.0',
                  'Microsoft HoloLens 2 hardware specs'),
        peak_fp32_tflops=Fact(0.73, 'estimate: Adreno 630 ~727 GFLOPS fp32, as widely '
                                    'quoted for Snapdragon 845/850'),
        peak_fp16_tflops=Fact(1.45, 'estimate: Adreno GPUs run fp16 at twice the fp32 rate'),
        train_utilization=_UTIL_MOBILE,
        ram_gb=Fact(4.0, 'Microsoft HoloLens 2 specs: 4 GB LPDDR4x'),
        battery_wh=Fact(16.5, 'estimate: ~16.5 Wh of rear-housing cells (teardown reports)'),
        runtime_h=Fact(2.5, 'Microsoft HoloLens 2 specs: 2-3 h active use'),
        radio=Fact('Wi-Fi 5 (802.11ac 2x2), Bluetooth 5.0', 'Microsoft HoloLens 2 specs'),
        tx_power_dbm=_TX_WIFI,
        compute_power_w=Fact(4.0, 'estimate: Snapdragon 850 sustained ~4-5 W'))),
    _device('ray_ban_meta', 'Smart Glasses', ('Visual', 'Audio'),
            ('everyday', 'mobile', 'social'), Hardware(
        chip=Fact('Qualcomm Snapdragon AR1 Gen 1', 'Meta / Qualcomm (2023 launch)'),
        peak_fp32_tflops=_GLASSES_SOC[0], peak_fp16_tflops=_GLASSES_SOC[1],
        train_utilization=_UTIL_LOW,
        ram_gb=_GLASSES_RAM,
        battery_wh=Fact(0.6, 'estimate: ~154 mAh in the frames (reported) x 3.85 V'),
        runtime_h=Fact(4.0, 'Meta: up to 4 h of moderate use'),
        radio=Fact('Wi-Fi 6, Bluetooth 5.3', 'Ray-Ban Meta specs'),
        tx_power_dbm=_TX_GLASSES,
        compute_power_w=Fact(1.0, 'estimate: ~1 W thermal envelope of glasses'))),
    _device('realwear_navigator_520', 'AR', ('Visual', 'Audio', 'Motion', 'Thermal'),
            ('industrial', 'fieldwork'), Hardware(
        chip=Fact('Qualcomm Snapdragon 662 (Adreno 610)', 'RealWear Navigator 520 specs'),
        peak_fp32_tflops=Fact(0.1, 'estimate: entry-level Adreno 610, ~0.1 TFLOPS fp32'),
        peak_fp16_tflops=Fact(0.2, 'estimate: Adreno GPUs run fp16 at twice the fp32 rate'),
        train_utilization=_UTIL_MOBILE,
        ram_gb=Fact(4.0, 'RealWear Navigator 520 specs: 4 GB'),
        battery_wh=Fact(12.5, 'reported: 3250 mAh hot-swappable pack x 3.85 V (assumed)'),
        runtime_h=Fact(4.0, 'estimate: a half shift per pack (hot-swappable for a full one)'),
        radio=Fact('Wi-Fi 5 (802.11ac), Bluetooth 5.0', 'RealWear Navigator 520 specs'),
        tx_power_dbm=_TX_WIFI,
        compute_power_w=Fact(3.0, 'estimate: Snapdragon 662 sustained ~3 W'))),
    _device('varjo_xr_4', 'VR / MR', _FULL, ('enterprise', 'simulation', 'training'), Hardware(
        chip=Fact('tethered PC: NVIDIA GeForce RTX 4090',
                  "Varjo XR-4 PC requirements (recommended GPU)"),
        peak_fp32_tflops=Fact(82.6, 'NVIDIA: RTX 4090 82.6 TFLOPS fp32'),
        peak_fp16_tflops=Fact(165.2, 'NVIDIA Ada whitepaper: RTX 4090 165.2 TFLOPS fp16 '
                                     'tensor (fp32 accumulate, dense)'),
        train_utilization=_UTIL_CUDA,
        ram_gb=Fact(24.0, 'NVIDIA: RTX 4090 24 GB GDDR6X (the GPU holds training state)'),
        battery_wh=Fact(0.0, 'mains-powered: the headset is tethered to a PC'),
        runtime_h=Fact(math.inf, 'mains-powered: unlimited'),
        radio=Fact('host PC Ethernet / Wi-Fi 6E', 'estimate: the host PC uplink'),
        tx_power_dbm=_TX_WIFI,
        compute_power_w=Fact(350.0, 'estimate: RTX 4090 (450 W TGP, NVIDIA) sustains '
                                    '~350 W while training'))),
    _device('vuzix_blade_2', 'AR', ('Visual', 'Audio', 'Motion'),
            ('industrial', 'fieldwork'), Hardware(
        chip=Fact('quad-core ARM Cortex-A53 class SoC', 'Vuzix Blade 2 specs (quad-core ARM)'),
        peak_fp32_tflops=Fact(0.05, 'estimate: 4 x A53 at ~2 GHz NEON (~64 GFLOPS) plus a '
                                    'small GPU'),
        peak_fp16_tflops=Fact(0.1, 'estimate: twice the fp32 rate'),
        train_utilization=_UTIL_LOW,
        ram_gb=_GLASSES_RAM,
        battery_wh=Fact(1.8, 'estimate: ~470 mAh internal cell (reported) x 3.85 V'),
        runtime_h=Fact(2.0, 'estimate: ~2 h of active display and camera use'),
        radio=Fact('Wi-Fi 5 (802.11ac), Bluetooth 5.0', 'reported: Vuzix Blade 2 specs'),
        tx_power_dbm=_TX_GLASSES,
        compute_power_w=Fact(1.5, 'estimate: ~1.5 W glasses SoC envelope'))),
    _device('xreal_air', 'AR', ('Visual', 'Motion', 'Head Tracking'),
            ('home', 'travel', 'entertainment'), Hardware(
        chip=Fact('host phone (the glasses are a tethered USB-C display); Snapdragon 8 Gen 2 '
                  'class assumed', 'XREAL Air specs (tethered display glasses)'),
        peak_fp32_tflops=Fact(3.0, 'estimate: flagship phone GPU (Adreno 740 class), as XR2 '
                                   'Gen 2'),
        peak_fp16_tflops=Fact(6.0, 'estimate: twice the fp32 rate'),
        train_utilization=_UTIL_MOBILE,
        ram_gb=Fact(8.0, 'estimate: a typical 2023 flagship phone (8 GB)'),
        battery_wh=Fact(17.3, 'estimate: 4500 mAh phone battery x 3.85 V'),
        runtime_h=Fact(3.0, 'estimate: phone driving the glasses display'),
        radio=Fact('host phone: Wi-Fi 6E / LTE-5G, Bluetooth 5.3',
                   'estimate: a 2023 flagship phone'),
        tx_power_dbm=Fact(23.0, '3GPP power class 3 UE maximum (23 dBm): the phone uplink'),
        compute_power_w=Fact(5.0, 'estimate: phone SoC sustained ~5 W'))),
    _device('samsung_project_moohan', 'MR', _FULL, ('home', 'enterprise', 'productivity'),
            Hardware(
        chip=Fact('Qualcomm Snapdragon XR2+ Gen 2 (Adreno 740 class)',
                  'paper Table 1; Samsung Galaxy XR specs'),
        peak_fp32_tflops=_XR2P_GEN2[0], peak_fp16_tflops=_XR2P_GEN2[1],
        train_utilization=_UTIL_MOBILE,
        ram_gb=Fact(16.0, 'reported: Samsung Galaxy XR specs, 16 GB'),
        battery_wh=Fact(19.0, 'estimate: external pack sized like Quest 3 (~19 Wh)'),
        runtime_h=Fact(2.0, 'reported: Samsung Galaxy XR, up to 2 h general use'),
        radio=Fact('Wi-Fi 7, Bluetooth 5.4', 'reported: Samsung Galaxy XR specs'),
        tx_power_dbm=_TX_WIFI,
        compute_power_w=Fact(8.0, 'estimate: XR2+ Gen 2 sustained ~8 W'))),
    _device('google_ai_glasses', 'Smart Glasses', ('Visual', 'Audio'),
            ('everyday', 'travel', 'social'), Hardware(
        chip=Fact('glasses-class SoC (Snapdragon AR1 class)',
                  'estimate: unreleased; assumed Ray-Ban Meta class'),
        peak_fp32_tflops=_GLASSES_SOC[0], peak_fp16_tflops=_GLASSES_SOC[1],
        train_utilization=_UTIL_LOW,
        ram_gb=_GLASSES_RAM,
        battery_wh=Fact(0.6, 'estimate: unreleased; assumed Ray-Ban Meta class'),
        runtime_h=Fact(4.0, 'estimate: unreleased; assumed Ray-Ban Meta class'),
        radio=Fact('Wi-Fi, Bluetooth LE', 'estimate: unreleased; assumed'),
        tx_power_dbm=_TX_GLASSES,
        compute_power_w=Fact(1.0, 'estimate: ~1 W thermal envelope of glasses'))),
    _device('apple_smart_glasses', 'Smart Glasses', ('Visual', 'Audio'),
            ('everyday', 'productivity'), Hardware(
        chip=Fact('glasses-class Apple SoC (Apple Watch S-series class)',
                  'estimate: unreleased; assumed'),
        peak_fp32_tflops=Fact(0.1, 'estimate: unreleased; watch-class GPU ~0.1 TFLOPS'),
        peak_fp16_tflops=Fact(0.1, 'estimate: Apple GPUs run fp16 at the fp32 rate'),
        train_utilization=_UTIL_LOW,
        ram_gb=_GLASSES_RAM,
        battery_wh=Fact(0.6, 'estimate: unreleased; assumed Ray-Ban Meta class'),
        runtime_h=Fact(4.0, 'estimate: unreleased; assumed Ray-Ban Meta class'),
        radio=Fact('Wi-Fi, Bluetooth LE', 'estimate: unreleased; assumed'),
        tx_power_dbm=_TX_GLASSES,
        compute_power_w=Fact(1.0, 'estimate: ~1 W thermal envelope of glasses'))),
)}


@dataclasses.dataclass(frozen=True)
class Addon:
  """A wearable that adds sensors to the devices it fits (not in Table 1)."""
  name: str
  sensors: tuple
  fits: tuple          # device kinds it attaches to
  example: str         # a real product of the class


ADDONS = {a.name: a for a in (
    # Headset-integrated EEG: the paper's Scenario 2 (neuroadaptive XR).
    Addon('eeg_headband', ('EEG/Physiological',), ('MR', 'VR / MR', 'AR'),
          'OpenBCI Galea (EEG, EMG, EDA, PPG in a headset strap)'),
    # Wrist-worn physiology: Scenario 4's physiological states.
    Addon('physio_band', ('EEG/Physiological',),
          ('MR', 'VR / MR', 'AR', 'Smart Glasses'),
          'a PPG/EDA wristband or smartwatch paired with the headset'),
)}
