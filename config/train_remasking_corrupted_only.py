# A remasking model, Approach A: the same data and model as config/train_remasking_all_positions.py,
# but the loss only counts the replaced positions (label [WRONG]). It is never told to leave a right
# character alone; train both and compare them (docs/training.md, docs/results.md).
# $ python train.py config/train_remasking_corrupted_only.py

import os
exec(open(os.path.join(os.path.dirname(__file__), 'train_remasking_all_positions.py')).read())

out_dir = 'out-remasking-corrupted-only'   # its own out_dir: ckpt.pt (the resume point) is per run
remasking_loss_type = 'corrupted_only'
