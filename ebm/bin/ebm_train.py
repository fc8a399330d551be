"""Train an energy-based TTS model with ESPnet's trainer: ``python -m ebm.bin.ebm_train --config ...``.

The counterpart of ``espnet2.bin.tts_train``; every trainer option of ESPnet applies (``--resume``, ``--ngpu``,
``--multiprocessing_distributed``, ``--print_config`` ...).
"""

from ebm.task import EBMTask


def get_parser():
    return EBMTask.get_parser()


def main(cmd=None):
    EBMTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
