"""market: the data-collection bounty market — domain life cycles (states.py), SQL store and Alembic
migrations, SIWE (EIP-4361) auth, dataset verification, the FastAPI service and its server-rendered
pages, the Vyper escrow and the payout relay on an EVM chain (embedded by default), and the CLI client.
It knows nothing of the control loop; it uses `bus` only to read recorded MCAP data.
"""
