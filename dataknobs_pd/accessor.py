"""The `dk` DataFrame accessor. Thin and stateless: pandas 3 builds a new one on every access."""

from __future__ import annotations

import pandas as pd

from . import api


@pd.api.extensions.register_dataframe_accessor("dk")
class DkAccessor:
    """df.dk.save / update_batch / delete, and pd.DataFrame.dk.load."""

    def __init__(self, df: pd.DataFrame):
        self._df = df

    def save(self, store, table, **kwargs):
        """See dataknobs_pd.save."""
        return api.save(self._df, store, table, **kwargs)

    def update_batch(self, store, table, **kwargs):
        """See dataknobs_pd.update_batch."""
        return api.update_batch(self._df, store, table, **kwargs)

    def delete(self, store, table, **kwargs):
        """See dataknobs_pd.delete."""
        return api.delete(self._df, store, table, **kwargs)

    load = staticmethod(api.load)  # usable as pd.DataFrame.dk.load(store, table, ...)
