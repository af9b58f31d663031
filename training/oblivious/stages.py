"""Role names and message stages of oblivious training, in one place.

    party   -> analyst  ohello     {rows, cols, missing, kinds}      public sizes and feature types
    analyst -> party    ocatreq    {columns, salt, buckets}          horizontal category agreement
    analyst -> party    ocats      {columns, lists}                  the agreed categories
    analyst -> party    obinreq    {level, requests}                 horizontal bin agreement
    party   -> server   obinshare  {counts}                          shares of cell counts (or sketches)
    analyst -> server   obinround  {size}                            a bin-agreement round
    server  -> analyst  obinsum    {counts}                          shares of the pooled counts
    analyst -> party    ocuts      {cuts} / party -> analyst ocuts   the cuts (horizontal / vertical,
                                   {cuts, mins, lists})               with the category lists)
    analyst -> server   oconfig    {public sizes and parameters}
    party   -> server   odata      {seed} to server-0, {onehot, real, y, w, w y, w y^2} shares to server-1
    server  -> analyst  oysum      {share}: sums of w y, w, w y^2    intercept, range check
    analyst -> server   obase      {share}                           shares of the base margin
    server <-> server   oopen      {x: masked words}
    dealer  -> server   oseed      {key};  server-1 -> dealer oneed {kind, sizes}; dealer -> server-1 ocorr
    server  -> analyst  otree      {valid, index, weight} shares
    analyst -> dealer   ostop
"""

from __future__ import annotations

ANALYST = "analyst"
DEALER = "dealer"
SERVERS = ("server-0", "server-1")
SERVER_STAGES = ("oseed", "oopen", "ocorr", "oconfig", "odata", "obinround", "obinshare", "obase")


def party_names(n_parties: int) -> list[str]:
    return [f"party-{i}" for i in range(n_parties)]
