from concurrent.futures import ThreadPoolExecutor

from clearing.payments.nonces import DbNonceStore


def test_a_nonce_is_new_once(db):
    store = DbNonceStore(db.sessions)
    assert not store.seen_before("wechatpay", "n1")
    assert store.seen_before("wechatpay", "n1")
    assert not store.seen_before("alipay", "n1")


def test_concurrent_replays_only_one_is_new(pg):
    store = DbNonceStore(pg.sessions)
    with ThreadPoolExecutor(16) as pool:
        seen = list(pool.map(lambda _: store.seen_before("wechatpay", "same"), range(16)))
    assert seen.count(False) == 1
