"""Whole protocols as sweeps: the runs of ``scripts/reproduce_*.sh``, executed N at a time on local
GPUs or CPU processes, or as SLURM job arrays through submitit; resumable, with a live status.

``python -m mutual_prompt.sweep --help``; see ``cli`` for the command line, ``plan`` for the runs.
"""
