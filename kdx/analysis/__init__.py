"""kdx.analysis"""
