def test_handler():
    assert True
