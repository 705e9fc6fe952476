from mmfr.cli import main

main()
