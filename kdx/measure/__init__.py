"""kdx.measure"""
