from sync.conftest import customer

def test_smoke(make_harness, sqlite_warehouse):
    h = make_harness(sqlite_warehouse)
    h.insert(customer("c1", "jane.doe@shop-mail.net", marketing_opt_in=True, customer_type="Wholesale", tags="VIP, News"),
             customer("c2", "bob.smith@shop-mail.net"))
    dr = h.run()
    print(dr.state, dr.run_id)
    print(h.results(dr.run_id))
    print(h.members())
    assert dr.state == "success"
