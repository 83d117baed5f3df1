from picometer.cli import main

main()
