"""The v2 task registry: Table 2 tasks as classification, regression or detection.

Names that mean what they mean in `catalog.TASKS` keep v1's name, class count
and latency class. Regression and detection tasks carry a float target
`examples['targets'][task]` [N, size]; classification a label in
`examples['y'][:, t]`. `carriers` are the modalities whose renders depend
on the task's latents (see generator.py); a device without any of them
cannot hold the task.
"""
from fedxr_jax.data import catalog
from fedxr_jax.data.task_kinds import KINDS, LATENCY_MS, TaskDef   # re-exported
from fedxr_jax.data.world import primitives as P


def _v1(name, carriers, output):
  t = catalog.TASKS[name]
  return TaskDef(name, 'classification', t.num_classes, carriers, t.latency_class, output)


TASKS = {t.name: t for t in (
    _v1('gesture', ('vision', 'hand', 'motion'),
        '6 hand gestures: nearest of the world\'s 6 prototypes of the hand code '
        '(swipe x/y, push, grip, point); motion sees it as the head following the hand'),
    _v1('activity', ('motion', 'vision', 'physio'),
        '5 activities: nearest prototype of the body code (cadence, intensity, posture)'),
    _v1('intent', ('gaze', 'hand', 'audio', 'motion', 'vision'),
        '4 UI intents: nearest prototype of the intent code (target x/y, urgency): the '
        'last fixation, the reach, the rising pitch; with roles, per-role prototypes'),
    _v1('emotion', ('audio', 'gaze', 'physio'),
        '4 emotions: nearest prototype of (valence, arousal): pitch, tempo, timbre, '
        'pupil, heart rate, skin conductance'),
    _v1('keyword', ('audio',), '8 spoken commands: nearest prototype of the vowel code '
        '(F1, F2, F2 glide)'),
    _v1('scene', ('depth', 'vision', 'thermal'),
        '5 scene types: nearest prototype of the room code (depth, ceiling, width)'),
    _v1('object', ('vision', 'thermal'),
        '8 object categories: nearest prototype of the appearance code (hue, aspect, '
        'texture, heat)'),
    _v1('gaze_target', ('gaze',), '9 gaze targets: the 3x3 view cell of gaze_point'),
    TaskDef('shared_grounding', 'classification', 5, ('gaze', 'audio'), 'low',
            'social: the object a user and its partner both attend (0-3), or 4 when '
            'they attend different ones; the partner\'s object is heard (its name in '
            'the partner\'s voice)'),
    TaskDef('gaze_point', 'regression', 2, ('gaze',), 'very low',
            'the final gaze point in view coordinates [0, 1]^2', point_dims=2,
            pck_threshold=0.05, scale=0.1),
    TaskDef('hand_pose', 'regression', 12, ('vision', 'hand'), 'low',
            '2-D image keypoints of wrist and 5 fingertips at the last frame', point_dims=2,
            pck_threshold=0.05, scale=0.1),
    TaskDef('body_pose', 'regression', 6, ('motion', 'hand', 'vision'), 'low to moderate',
            '3-D head and wrist positions (m) from the standing rest point, last frame',
            point_dims=3, pck_threshold=0.05, scale=0.1),
    TaskDef('cognitive_load', 'regression', 1, ('gaze', 'physio', 'audio'),
            'low to moderate', 'cognitive load level in [0, 1] (fixation length, '
            'micro-pauses, pupil, EEG theta/alpha, heart rate)', pck_threshold=0.1,
            scale=0.2),
    TaskDef('object_box', 'detection', 4, ('vision', 'depth', 'thermal'), 'low',
            'the main object\'s box [cx, cy, w, h] in image coordinates [0, 1]'),
)}

# The class-bearing code of each block (primitives.BLOCKS) as a regression target. Every
# world's classes of a block are nearest prototypes of its code, and the physics from code
# to signal is every world's: what a public corpus's ground truth can teach a base about
# a world it never saw (`fedxr-pretrain`'s corpus tasks). Correct within 0.5 of a code
# unit (codes spread ~2.2 a dimension: class_spread 2 around prototypes, 1 within).
CODE_TASKS = tuple(
    TaskDef(f'{b}_code', 'regression', d, TASKS[b].carriers, TASKS[b].latency_class,
            f'the {d}-dim {b} code its classes are read from (primitives.BLOCKS)',
            pck_threshold=0.5)
    for b, d in P.BLOCKS)
TASKS.update({t.name: t for t in CODE_TASKS})
