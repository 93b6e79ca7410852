from zzd.cli import main

main()
