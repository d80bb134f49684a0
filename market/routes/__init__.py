"""The market's HTTP API, one router per resource: sign-in, chain, bounties, claims, uploads (rigs and blobs),
submissions (and reviews), payouts, health, and the server-rendered pages. `market/api.py` builds the app's
state and includes them; `deps.py` hands the routes the signed-in address and the market."""
