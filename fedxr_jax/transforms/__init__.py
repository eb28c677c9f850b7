"""Client update transforms (interface: core.transforms), one file each.

Model poisoning (malicious clients only): sign_flip, gaussian_attack,
scaled_replacement. Compression (each reports 'upload_bits'): topk, qsgd,
sign (scaled_sign), event_trigger. Privacy: clip (and uniform_weights).
HetLoRA's weights: hetlora. By config block: `registry`.
"""
