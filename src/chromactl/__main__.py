from chromactl.cli import main

main()
