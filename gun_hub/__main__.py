from gun_hub.cli import main

main()
