from kdx.cli import main

main()
