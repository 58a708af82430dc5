"""kdx.distill"""
