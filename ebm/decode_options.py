"""The options of ESPnet's Tacotron 2 decoding that an inference config (``conf/decode*.yaml``) may set.

Stage 4's decoding, synthesis and the Langevin benchmark read the same YAML and pass on only these keys, so the
list lives here, once, rather than in one entry point that the others import.
"""

DECODE_KEYS = ("threshold", "minlenratio", "maxlenratio", "use_att_constraint", "backward_window",
               "forward_window")
