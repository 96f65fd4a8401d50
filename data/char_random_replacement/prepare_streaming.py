"""
CharRandomReplacementProvider: edit-style corruption for models that learn which characters to change.

Positions are picked exactly as in char_diffusion (stages, or mask_probability), then each picked
position is routed to one branch of `train_corruption_mixture = (random, mask, fragment)`:

- random:   a character drawn from the vocabulary (never [MASK]/[WRONG] nor extra_special_token_ids);
            original_token_probability_multiplier weighs the original character against the others;
- mask:     [MASK];
- fragment: the character at the same place of a window taken from elsewhere in the train text, so
            runs of picked positions read as plausible text.

Targets are full by default (the original character everywhere, so the model also learns what to
keep); dataset_partial_targets=True gives ignore_index outside the picked positions. The validation
set never uses fragments: their weight is dropped and the other weights renormalised.
"""

import torch

from common import UserError
from data.char_diffusion.prepare_streaming import CharDiffusionProvider
from data import corruption

BRANCH_NAMES = ('random', 'mask', 'fragment')


class CharRandomReplacementProvider(CharDiffusionProvider):
    # branches are looked up by name, so a subclass can add its own (char_inference_replacement)
    BRANCH_NAMES = BRANCH_NAMES
    DEFAULTS = dict(
        train_corruption_mixture=(0.8, 0.2, 0.0),     # (random, mask, fragment) shares of the picked positions
        original_token_probability_multiplier=1.0,    # random branch: the original char's weight (1: uniform, 0: never)
        extra_special_token_ids=(),                   # character ids the random branch never draws
        dataset_partial_targets=False,                # False: full targets; True: ignore_index outside picked positions
        validation_partial_targets=None,              # None: same as dataset_partial_targets
    )

    def check_config(self):
        super().check_config()
        self.mixture = {'train': corruption.validate_mixture(
            self.cfg['train_corruption_mixture'], self.BRANCH_NAMES, 'train_corruption_mixture')}
        self.mixture['val'] = self.validation_mixture(self.mixture['train'])
        multiplier = self.cfg['original_token_probability_multiplier']
        if not isinstance(multiplier, (int, float)) or multiplier < 0:
            raise UserError(f"original_token_probability_multiplier must be >= 0, got {multiplier!r}")
        self.allowed_ids = self.random_branch_ids()

    def validation_mixture(self, weights):
        """The train mixture without fragments (validation stays deterministic in what it draws from)."""
        kept = [0.0 if name == 'fragment' else w for name, w in zip(self.BRANCH_NAMES, weights)]
        total = sum(kept)
        if total == 0:
            print(f"[{self.dataset}] train_corruption_mixture has only fragments; "
                  f"the validation set uses the random branch instead", flush=True)
            return tuple(float(name == 'random') for name in self.BRANCH_NAMES)
        return tuple(w / total for w in kept)

    def random_branch_ids(self, key='extra_special_token_ids'):
        """Long (K,): the character ids a random branch may draw (all but those listed in the key `key`)."""
        n_chars = len(self.vocab['chars'])
        extra = self.cfg[key]
        if not isinstance(extra, (tuple, list)) or not all(isinstance(i, int) and 0 <= i < n_chars for i in extra):
            raise UserError(f"{key} must be character ids in [0, {n_chars}), got {extra!r}")
        allowed = torch.ones(n_chars, dtype=torch.bool)
        allowed[list(extra)] = False
        if not allowed.any():
            raise UserError(f"{key} leaves no character for the random branch")
        return allowed.nonzero().squeeze(1)

    def label_semantics(self, split):
        partial = self.cfg['dataset_partial_targets']
        if split == 'val' and self.cfg['validation_partial_targets'] is not None:
            partial = self.cfg['validation_partial_targets']
        return 'partial' if partial else 'full'

    def corruption_meta(self):
        meta = super().corruption_meta()
        meta['corruption'].update(
            mixture=dict(zip(self.BRANCH_NAMES, self.mixture['train'])),
            val_mixture=dict(zip(self.BRANCH_NAMES, self.mixture['val'])),
            original_token_probability_multiplier=self.cfg['original_token_probability_multiplier'],
            extra_special_token_ids=tuple(self.cfg['extra_special_token_ids']),
            fragment_source='train split')
        meta.update(corruption_type='random_replacement', mixture_has_mask=self.share('train', 'mask') > 0)
        return meta

    def share(self, split, name):
        """The mixture weight of branch `name` in `split`."""
        return self.mixture[split][self.BRANCH_NAMES.index(name)]

    def fragment_source(self, split):
        return self.ids['train']  # validation has no fragment share (validation_mixture)

    def corrupt_selected(self, split, clean, selected, generator):
        # fragments are chosen per row, so a row's runs of picked positions get contiguous text
        branch = corruption.route_branches(selected, self.mixture[split], generator,
                                           row_level_branch=self.BRANCH_NAMES.index('fragment'))  # (N, T), -1 outside
        return self.fill_branches(split, clean, branch, generator), branch, self.BRANCH_NAMES

    def fill_branches(self, split, clean, branch, generator):
        """x (N, T): `clean` with the positions routed to random / mask / fragment replaced; a subclass
        with more branches fills its own after calling this."""
        code = {name: index for index, name in enumerate(self.BRANCH_NAMES)}
        x = clean.clone()
        # each branch is drawn only when it has a share, so unused branches cost nothing
        if self.share(split, 'random') > 0:
            fill_random(x, clean, branch == code['random'], self.allowed_ids,
                        self.cfg['original_token_probability_multiplier'], generator)
        if self.share(split, 'mask') > 0:
            x.masked_fill_(branch == code['mask'], self.vocab['mask_token_id'])
        if self.share(split, 'fragment') > 0:
            fragments = corruption.fragment_tokens(self.fragment_source(split), *clean.shape, generator)
            x = torch.where(branch == code['fragment'], fragments.to(x.dtype), x)
        return x

    def targets(self, split, clean, selected):
        if self.label_semantics(split) == 'partial':
            return super().targets(split, clean, selected)
        return clean  # (N, T) full labels: the original everywhere


def fill_random(x, clean, routed, allowed_ids, original_multiplier, generator):
    """Random characters into x (in place) at the `routed` (N, T) positions (see corruption.random_tokens)."""
    # draws for the M routed positions only; flat indices are cheaper than boolean indexing
    positions = routed.view(-1).nonzero().squeeze(1)  # (M,)
    if positions.numel() == 0:
        return
    originals = clean.view(-1).index_select(0, positions).long()  # (M,)
    drawn = corruption.random_tokens(originals, allowed_ids, original_multiplier, generator)
    x.view(-1).index_copy_(0, positions, drawn.to(x.dtype))


Provider = CharRandomReplacementProvider
