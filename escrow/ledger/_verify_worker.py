"""``python -m escrow.ledger._verify_worker``: one worker of ``Ledger.verify`` (private)."""

from escrow.ledger.verify import worker_main

if __name__ == "__main__":
    worker_main()
