"""kdx.store"""
