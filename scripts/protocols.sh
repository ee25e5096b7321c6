# The protocols, each defined once: their configs, datasets, seeds, folders and train.py overrides.
# The run scripts source this file and the sweep (python -m mutual_prompt.sweep) reads it, so both
# make the same runs into the same folders; change a value here and both follow.
#
# Only comments and NAME=VALUE lines (mutual_prompt/tools/protocols.py refuses anything else). A
# value is a word, a "list of words" (${NAME} names a list above), or a 'template' in which each
# run fills in {OUTPUT} {TRAINER} {CFG} {SHOTS} {DATASET} {SOURCE} {SUB}: a *_DIR is the folder of
# a run's seeds (the run writes into <DIR>/seed<SEED>, the folder parse_test_res.py summarises),
# a *_OPTS the KEY VALUE overrides the protocol gives train.py before the command line's own.
# The environment variables CFG, SHOTS, SEEDS, DATASETS, TARGETS, SOURCE, SHOT_LIST and SUB
# override these defaults. A test loads its training's last epoch (OPTIM.MAX_EPOCH, from the
# overrides, else from the config file) unless LOADEP is set.

BENCHMARK_DATASETS="imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"

# Base-to-new generalisation: train on the base half of each dataset's classes, test on the new
# half (SUB=base tests on the base half).
BASE2NEW_CFG=vit_b16_c4_ep10_batch1_ctxv1
BASE2NEW_DATASETS="${BENCHMARK_DATASETS}"
BASE2NEW_SEEDS="1 2 3"
BASE2NEW_SHOTS=16
BASE2NEW_SUB=new
BASE2NEW_TRAIN_DIR='{OUTPUT}/base2new/train_base/{DATASET}/shots_{SHOTS}/{TRAINER}/{CFG}'
BASE2NEW_TRAIN_OPTS='DATASET.NUM_SHOTS {SHOTS} DATASET.SUBSAMPLE_CLASSES base'
BASE2NEW_TEST_DIR='{OUTPUT}/base2new/test_{SUB}/{DATASET}/shots_{SHOTS}/{TRAINER}/{CFG}'
BASE2NEW_TEST_OPTS='DATASET.NUM_SHOTS {SHOTS} DATASET.SUBSAMPLE_CLASSES {SUB}'

# Cross-dataset transfer: train on all classes of SOURCE, test on each target's classes. Domain
# generalisation (dg_test.sh) is the same test on the ImageNet variants.
XD_CFG=vit_b16_c4_ep5_batch4_ctxv1_xd
XD_SOURCE=imagenet
DG_TARGETS="imagenetv2 imagenet_sketch imagenet_a imagenet_r"
XD_TARGETS="caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101 ${DG_TARGETS}"
XD_SEEDS="1 2 3"
XD_SHOTS=16
XD_TRAIN_DIR='{OUTPUT}/{SOURCE}/{TRAINER}/{CFG}_{SHOTS}shots'
XD_TRAIN_OPTS='DATASET.NUM_SHOTS {SHOTS}'
XD_TEST_DIR='{OUTPUT}/evaluation/{TRAINER}/{CFG}_{SHOTS}shots/{DATASET}'
XD_TEST_OPTS=''

# Few-shot learning on all classes of each dataset, with each number of shots (SHOTS per run).
FEW_SHOT_CFG=vit_b16_c4_ep10_batch4_ctxv1_fewshot
FEW_SHOT_DATASETS="${BENCHMARK_DATASETS}"
FEW_SHOT_SEEDS="1 2 3"
FEW_SHOT_SHOT_LIST="1 2 4 8 16"
FEW_SHOT_TRAIN_DIR='{OUTPUT}/few_shot/{DATASET}/{TRAINER}/{CFG}_{SHOTS}shots'
FEW_SHOT_TRAIN_OPTS='DATASET.NUM_SHOTS {SHOTS}'
# Zero-shot CLIP on each dataset's test set, all classes: the reference line of the few-shot tables
# and figures. One run per dataset (seed 1; nothing is trained), trainer ZeroshotMP with its config of
# the same backbone as CFG (configs/trainers/ZeroshotMP/: vit_b16 for ViT-B/16, toy for the toy CLIP),
# so {CFG} here is that config.
FEW_SHOT_ZEROSHOT_DIR='{OUTPUT}/few_shot/{DATASET}/ZeroshotMP/{CFG}'
# Linear-probe CLIP with each number of shots and seed, all classes: the reference curve of the few-shot
# tables and figures (CoOp's figure has it). Trainer LinearProbeMP with its config of the same backbone
# as CFG (configs/trainers/LinearProbeMP/), so {CFG} here is that config; FEW_SHOT_TRAIN_OPTS give its
# shots. Each image's features are computed once and cached; the fits run on the CPU.
FEW_SHOT_LINEAR_PROBE_DIR='{OUTPUT}/few_shot/{DATASET}/LinearProbeMP/{CFG}_{SHOTS}shots'
