"""kdx.run"""
