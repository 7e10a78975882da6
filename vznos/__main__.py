from vznos.cli import main

main()
